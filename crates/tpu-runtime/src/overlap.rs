//! Memory-overlap checks of written tensors, as CPU PyTorch makes them
//! (`at::assert_no_internal_overlap`, `at::assert_no_partial_overlap`).
//!
//! The device computes every op functionally, so an overlapping write would
//! not corrupt memory here; it would silently give a different answer from
//! CPU, where the same code raises. The checks work on views (offset, sizes,
//! strides) only, before anything is recorded.

use crate::error::Result;
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

/// A tensor as the checks see it: its storage's id, view and dtype.
pub type Tensor<'a> = (u64, &'a View, DType);

/// A tpu tensor of a call: its argument position, and whether it is written
/// (`out=` or in-place) or an `out=` argument.
pub struct Operand<'a> {
    pub arg: usize,
    pub tensor: Tensor<'a>,
    pub written: bool,
    pub out: bool,
}

fn overlap(a: Tensor, b: Tensor) -> Overlap {
    if a.0 != b.0 || a.1.numel() == 0 || b.1.numel() == 0 {
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

/// `dst` is written from `src` (`copy_`; `None`: a CPU source): no internal
/// and no partial overlap.
pub fn check_copy(src: Option<Tensor>, dst: Tensor) -> Result<()> {
    if internal_overlap(dst.1) {
        crate::invalid!("{INTERNAL}");
    }
    if let Some(s) = src {
        if overlap(dst, s) == Overlap::Partial {
            crate::invalid!("{PARTIAL}");
        }
    }
    Ok(())
}

/// The written tensors of a call (`out=`, in-place `self`) against themselves
/// and against the call's other tensors. `base` is the op's name without
/// its overload (`add_`).
pub fn check_call(base: &str, operands: &[Operand]) -> Result<()> {
    let check_inputs = !UNCHECKED_INPUTS.iter().any(|p| base.starts_with(p));
    for w in operands.iter().filter(|o| o.written) {
        if !WRITES_EXPANDED.contains(&base) && internal_overlap(w.tensor.1) {
            crate::invalid!("{INTERNAL}");
        }
        if !check_inputs {
            continue;
        }
        for t in operands.iter().filter(|o| o.arg != w.arg && !o.out) {
            if overlap(w.tensor, t.tensor) == Overlap::Partial {
                crate::invalid!("{PARTIAL}");
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
        let t = |view: &View| -> (u64, View, DType) { (1, view.clone(), DType::F32) };
        let check = |a: &(u64, View, DType), b: &(u64, View, DType)| {
            overlap((a.0, &a.1, a.2), (b.0, &b.1, b.2))
        };
        let (whole, head, tail) = (
            t(&v(0, &[4], &[1])),
            t(&v(0, &[3], &[1])),
            t(&v(1, &[3], &[1])),
        );
        let transposed = t(&v(0, &[2, 2], &[1, 2]));
        let rows = t(&v(0, &[2, 2], &[2, 1]));
        assert!(check(&whole, &whole) == Overlap::Full);
        assert!(check(&head, &tail) == Overlap::Partial);
        assert!(check(&rows, &transposed) == Overlap::Partial);
        assert!(check(&t(&v(0, &[2], &[1])), &t(&v(2, &[2], &[1]))) == Overlap::No);
        let other = (2, whole.1.clone(), DType::F32);
        assert!(check(&other, &whole) == Overlap::No);
    }
}
