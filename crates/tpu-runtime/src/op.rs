//! The types of one op's path through the runtime: its arguments as the C
//! ABI delivers them ([`CallArg`]), what it returns ([`Ret`]) and how a call
//! ends ([`Outcome`]).

use crate::error::{Error, Result};
use crate::host::HostSpan;
use crate::storage::Storage;
use crate::trace::{MathBits, TensorRef};
use std::sync::Arc;
use tpu_graph::{DType, View};
use tpu_lower::Arg;

/// An op's name without its overload: `add_.Tensor` -> `add_`.
pub fn base_name(op: &str) -> &str {
    op.split_once('.').map_or(op, |(base, _)| base)
}

#[derive(Clone)]
pub enum TensorIn<'a> {
    Tpu {
        storage: Arc<Storage>,
        view: View,
        dtype: DType,
        device: usize,
        /// PyTorch's lazy conjugate / negative view bits.
        bits: MathBits,
    },
    Host {
        span: HostSpan,
        sizes: &'a [i64],
        strides: &'a [i64],
        dtype: DType,
        wrapped: bool,
    },
}

impl TensorIn<'_> {
    pub fn sizes(&self) -> &[i64] {
        match self {
            TensorIn::Tpu { view, .. } => &view.sizes,
            TensorIn::Host { sizes, .. } => sizes,
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            TensorIn::Tpu { dtype, .. } | TensorIn::Host { dtype, .. } => *dtype,
        }
    }
    /// Storage, view and dtype of a tpu tensor (for the overlap checks).
    pub fn tpu_parts(&self) -> Option<crate::overlap::Tensor<'_>> {
        match self {
            TensorIn::Tpu {
                storage,
                view,
                dtype,
                ..
            } => Some((storage.id, view, *dtype)),
            TensorIn::Host { .. } => None,
        }
    }
    pub fn tensor_ref(&self) -> Option<TensorRef<'_>> {
        match self {
            TensorIn::Tpu {
                storage,
                view,
                dtype,
                bits,
                ..
            } => Some(TensorRef {
                storage,
                view: view.clone(),
                dtype: *dtype,
                bits: *bits,
            }),
            TensorIn::Host { .. } => None,
        }
    }
    /// `float32[2, 3]` (and `cpu` for host tensors), for error messages.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self.sizes().iter().map(|d| d.to_string()).collect();
        let place = if matches!(self, TensorIn::Host { .. }) {
            " (cpu)"
        } else {
            ""
        };
        format!("{}[{}]{place}", self.dtype(), dims.join(", "))
    }
}

#[derive(Clone)]
pub enum ArgIn<'a> {
    Value(Arg),
    Tensor(TensorIn<'a>),
    Tensors(Vec<Option<TensorIn<'a>>>),
}

#[derive(Clone)]
pub struct CallArg<'a> {
    pub arg: ArgIn<'a>,
    pub is_write: bool,
    pub is_out: bool,
}

pub enum Ret {
    /// The argument at this index (an `out=` tensor or in-place `self`).
    Arg(usize),
    New {
        storage: Arc<Storage>,
        sizes: Vec<i64>,
        dtype: DType,
    },
    Int(i64),
    Double(f64),
    Bool(bool),
    /// A complex number: real and imaginary parts.
    Complex(f64, f64),
}

/// How a call ends.
pub enum Outcome {
    /// The op ran (or was recorded to run): what it returns.
    Done(Vec<Ret>),
    /// PyTorch leaves sizing some `out=` tensors to the kernel: these
    /// arguments (index, sizes) must be resized and the op called again.
    Resize(Vec<(usize, Vec<i64>)>),
}

/// An op the runtime implements itself (a copy, a host read, a data-dependent
/// shape), run on the call's arguments; registered in the op table of `dispatch.rs`.
pub type RuntimeOp = fn(&[CallArg]) -> Result<Outcome>;

impl From<Vec<Ret>> for Outcome {
    fn from(rets: Vec<Ret>) -> Outcome {
        Outcome::Done(rets)
    }
}

/// `e` as an error of the call `op(args)`: `aten::mm.out (arguments:
/// float32[2, 3], float32[2, 3]): <message>`.
pub fn in_op(op: &str, args: &[CallArg], e: Error) -> Error {
    let arguments = args
        .iter()
        .filter_map(|a| match &a.arg {
            ArgIn::Tensor(t) => Some(t.describe()),
            ArgIn::Tensors(ts) => Some(format!(
                "[{}]",
                ts.iter()
                    .map(|t| t.as_ref().map_or("None".into(), |t| t.describe()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            ArgIn::Value(Arg::None) => None,
            ArgIn::Value(v) => Some(format!("{v:?}")),
        })
        .collect();
    let ns = if op.contains("::") { "" } else { "aten::" };
    Error::InOp {
        op: format!("{ns}{op}"),
        arguments,
        source: Box::new(e),
    }
}

/// The tensor argument at position `i` of a call.
pub fn tensor_at<'a>(args: &'a [CallArg], i: usize) -> Result<&'a TensorIn<'a>> {
    match args.get(i).map(|a| &a.arg) {
        Some(ArgIn::Tensor(t)) => Ok(t),
        _ => crate::invalid!("expected a tensor at argument {i}"),
    }
}

/// The device of the op: that of its tpu tensors, which must agree.
pub fn device_of(args: &[CallArg]) -> Result<usize> {
    let mut found: Option<usize> = None;
    let mut check = |t: &TensorIn| -> Result<()> {
        if let TensorIn::Tpu { device, .. } = t {
            match found {
                Some(d) if d != *device => {
                    crate::invalid!("Expected all tensors to be on the same device, but found at least two devices, tpu:{d} and tpu:{device}!")
                }
                _ => found = Some(*device),
            }
        }
        Ok(())
    };
    for a in args {
        match &a.arg {
            ArgIn::Tensor(t) => check(t)?,
            ArgIn::Tensors(ts) => {
                for t in ts.iter().flatten() {
                    check(t)?;
                }
            }
            ArgIn::Value(_) => {}
        }
    }
    Ok(found.unwrap_or(0))
}
