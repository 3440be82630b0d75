//! Memory-overlap checks of written tensors, as CPU PyTorch makes them
//! (`at::assert_no_internal_overlap`, `at::assert_no_partial_overlap`).
//!
//! The device computes every op functionally, so an overlapping write would
//! not corrupt memory here; it would silently give a different answer from
//! CPU, where the same code raises. The checks work on views (offset, sizes,
//! strides) only, before anything is recorded.

use crate::dispatch::{ArgIn, CallArg, TensorIn};
use crate::error::Result;
use crate::storage::Storage;
use std::sync::Arc;
use tpu_graph::{DType, View};

const INTERNAL: &str = "unsupported operation: more than one element of the written-to tensor refers to a single memory location. Please clone() the tensor before performing the operation.";
const PARTIAL: &str = "unsupported operation: some elements of the input tensor and the written-to tensor refer to a single memory location. Please clone() the tensor before performing the operation.";

/// Ops that write through expanded views on CPU without complaint.
const WRITES_EXPANDED: &[&str] = &[
    "fill_",
    "zero_",
    "masked_fill_",
    "index_put_",
    "_index_put_impl_",
    "index_fill_",
    "set_",
    "resize_",
    "as_strided_",
];

/// Ops whose CPU kernels do not check inputs against outputs (not
/// TensorIterator-based): linear algebra, convolution, sorting.
const UNCHECKED_INPUTS: &[&str] = &[
    "mm",
    "bmm",
    "addmm",
    "addbmm",
    "baddbmm",
    "addmv",
    "mv",
    "addr",
    "dot",
    "vdot",
    "matmul",
    "linalg",
    "_linalg",
    "cholesky",
    "triangular_solve",
    "conv",
    "_conv",
    "sort",
    "topk",
    "kthvalue",
    "median",
    "mode",
    "lu",
    "qr",
    "svd",
    "eig",
];

#[derive(PartialEq, Eq)]
enum Overlap {
    No,
    Full,
    Partial,
    TooHard,
}

/// A size > 1 with stride 0: several elements are one memory location.
fn internal_overlap(v: &View) -> bool {
    v.sizes
        .iter()
        .zip(&v.strides)
        .any(|(&n, &s)| n > 1 && s == 0)
}

/// Elements tile one contiguous range exactly (in some dimension order).
fn dense(v: &View) -> bool {
    let mut dims: Vec<(i64, i64)> = v
        .sizes
        .iter()
        .zip(&v.strides)
        .filter(|(&n, _)| n != 1)
        .map(|(&n, &s)| (n, s))
        .collect();
    dims.sort_by_key(|&(_, s)| s);
    let mut expect = 1;
    for (n, s) in dims {
        if s != expect {
            return false;
        }
        expect *= n;
    }
    true
}

type Tensor<'a> = (&'a Arc<Storage>, &'a View, DType);

fn overlap(a: Tensor, b: Tensor) -> Overlap {
    if !Arc::ptr_eq(a.0, b.0) || a.1.numel() == 0 || b.1.numel() == 0 {
        return Overlap::No;
    }
    if !dense(a.1) || !dense(b.1) {
        return Overlap::TooHard;
    }
    let span = |(_, v, d): Tensor| {
        let item = d.size() as i64;
        (v.offset * item, (v.offset + v.numel()) * item)
    };
    let ((a0, a1), (b0, b1)) = (span(a), span(b));
    if (a0, a1) == (b0, b1) {
        return if a.1.strides == b.1.strides && a.2 == b.2 {
            Overlap::Full
        } else {
            Overlap::Partial
        };
    }
    if a0 < b1 && b0 < a1 {
        Overlap::Partial
    } else {
        Overlap::No
    }
}

fn tpu<'a>(t: &'a TensorIn<'_>) -> Option<Tensor<'a>> {
    match t {
        TensorIn::Tpu {
            storage,
            view,
            dtype,
            ..
        } => Some((storage, view, *dtype)),
        TensorIn::Host { .. } => None,
    }
}

/// `dst` is written from `src` (`copy_`): no internal and no partial overlap.
pub fn check_copy(src: &TensorIn, dst: &TensorIn) -> Result<()> {
    let Some(d) = tpu(dst) else { return Ok(()) };
    if internal_overlap(d.1) {
        crate::invalid!("{INTERNAL}");
    }
    if let Some(s) = tpu(src) {
        if overlap(d, s) == Overlap::Partial {
            crate::invalid!("{PARTIAL}");
        }
    }
    Ok(())
}

/// The written tensors of a call (`out=`, in-place `self`) against themselves
/// and against the call's other tensors.
pub fn check_call(op: &str, args: &[CallArg]) -> Result<()> {
    let base = op.split('.').next().unwrap_or(op);
    let check_inputs = !UNCHECKED_INPUTS.iter().any(|p| base.starts_with(p));
    for (i, a) in args.iter().enumerate() {
        let ArgIn::Tensor(w) = &a.arg else { continue };
        let Some(w) = tpu(w).filter(|_| a.is_write) else {
            continue;
        };
        if !WRITES_EXPANDED.contains(&base) && internal_overlap(w.1) {
            crate::invalid!("{INTERNAL}");
        }
        if !check_inputs {
            continue;
        }
        for (j, b) in args.iter().enumerate() {
            if j == i || b.is_out {
                continue;
            }
            let inputs: Vec<&TensorIn> = match &b.arg {
                ArgIn::Tensor(t) => vec![t],
                ArgIn::Tensors(ts) => ts.iter().flatten().collect(),
                ArgIn::Value(_) => continue,
            };
            for t in inputs.into_iter().filter_map(tpu) {
                if overlap(w, t) == Overlap::Partial {
                    crate::invalid!("{PARTIAL}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(offset: i64, sizes: &[i64], strides: &[i64]) -> View {
        View {
            offset,
            sizes: sizes.to_vec(),
            strides: strides.to_vec(),
        }
    }

    #[test]
    fn stride_zero_is_internal_overlap() {
        assert!(internal_overlap(&v(0, &[3], &[0])));
        assert!(!internal_overlap(&v(0, &[1], &[0])));
        assert!(!internal_overlap(&v(0, &[2, 3], &[3, 1])));
    }

    #[test]
    fn dense_views_in_any_order() {
        assert!(dense(&v(0, &[2, 3], &[3, 1])));
        assert!(dense(&v(0, &[3, 2], &[1, 3])));
        assert!(!dense(&v(0, &[2, 2], &[4, 1])));
    }

    #[test]
    fn overlap_of_two_views_of_one_storage() {
        let s = crate::storage::new_storage(64, 0).unwrap();
        fn t<'a>(s: &'a Arc<Storage>, view: &'a View) -> Tensor<'a> {
            (s, view, DType::F32)
        }
        let (whole, head, tail) = (v(0, &[4], &[1]), v(0, &[3], &[1]), v(1, &[3], &[1]));
        let transposed = v(0, &[2, 2], &[1, 2]);
        let rows = v(0, &[2, 2], &[2, 1]);
        assert!(overlap(t(&s, &whole), t(&s, &whole)) == Overlap::Full);
        assert!(overlap(t(&s, &head), t(&s, &tail)) == Overlap::Partial);
        assert!(overlap(t(&s, &rows), t(&s, &transposed)) == Overlap::Partial);
        assert!(overlap(t(&s, &v(0, &[2], &[1])), t(&s, &v(2, &[2], &[1]))) == Overlap::No);
        let other = crate::storage::new_storage(64, 0).unwrap();
        assert!(overlap((&other, &whole, DType::F32), t(&s, &whole)) == Overlap::No);
        crate::storage::free(s.clone());
        crate::storage::free(other);
    }
}
