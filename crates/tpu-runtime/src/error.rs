//! The runtime's error type; each kind maps to one Python exception class.

use tpu_lower::LowerError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad shapes, dtypes, devices or values: `RuntimeError`.
    #[error("{0}")]
    Invalid(String),
    /// An index out of range (a check of the lowering or of the program): `IndexError`.
    #[error("{0}")]
    Index(String),
    /// No lowering for the op: `NotImplementedError`.
    #[error("{0}")]
    NotImplemented(String),
    /// The device is out of memory: `torch.OutOfMemoryError`.
    #[error("{0}")]
    OutOfMemory(String),
    /// The plugin failed (compile, transfer, execute).
    #[error("{0}")]
    Pjrt(#[from] pjrt::Error),
    /// `out=` arguments (index, required sizes) the shim must resize before the op is retried.
    #[error("out= tensors need resizing: {0:?}")]
    ResizeOutputs(Vec<(usize, Vec<i64>)>),
    /// No usable PJRT plugin.
    #[error("{0}")]
    Platform(String),
    /// A `TORCH_TPU_*` variable with a value that does not parse: `ValueError`.
    #[error(transparent)]
    Env(#[from] crate::env::EnvError),
    /// Address space for storages ran out (or a size overflowed it):
    /// `torch.OutOfMemoryError`, as no allocation of that size can succeed.
    #[error("out of memory: the tpu storage address space is used up (cannot place {nbytes} more bytes)")]
    AddressSpace { nbytes: u64 },
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<LowerError> for Error {
    fn from(e: LowerError) -> Self {
        match e {
            LowerError::Unsupported(m) => Error::NotImplemented(m),
            LowerError::Invalid(m) => Error::Invalid(m),
            LowerError::Index(m) => Error::Index(m),
        }
    }
}

impl From<tpu_graph::GraphError> for Error {
    fn from(e: tpu_graph::GraphError) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl Error {
    /// The `TpuStatus` code of the C ABI.
    pub fn status(&self) -> i32 {
        match self {
            Error::NotImplemented(_) => 2,
            Error::OutOfMemory(_) => 3,
            Error::Index(_) => 4,
            Error::AddressSpace { .. } => 3,
            Error::Pjrt(e) if e.is_resource_exhausted() => 3,
            _ => 1,
        }
    }
}

/// Fails with `Error::Invalid` and a formatted message.
#[macro_export]
macro_rules! invalid {
    ($($t:tt)*) => { return Err($crate::error::Error::Invalid(format!($($t)*))) };
}
