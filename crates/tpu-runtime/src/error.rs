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
    /// An op's error with the call that raised it: the op and its arguments
    /// (`float32[2, 3]`, scalars), as every message to the user names them.
    #[error("{op} (arguments: {}): {source}", arguments.join(", "))]
    InOp {
        op: String,
        arguments: Vec<String>,
        source: Box<Error>,
    },
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
            LowerError::DtypeNotImplemented(m) => Error::NotImplemented(m),
        }
    }
}

impl From<tpu_graph::GraphError> for Error {
    fn from(e: tpu_graph::GraphError) -> Self {
        LowerError::from(e).into()
    }
}

/// The status codes of the C ABI (`TpuStatus` in `csrc/tpu_abi.h`; a test
/// reads the header and checks that both agree).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    /// `RuntimeError`.
    Runtime = 1,
    NotImplemented = 2,
    OutOfMemory = 3,
    Index = 4,
    Value = 5,
    Type = 6,
    /// Not lowered, and allowed to run on the CPU: the shim's fallback runs it.
    RunOnCpu = 10,
    /// The results list `out=` arguments to resize before calling again.
    ResizeOutputs = 11,
}

impl Error {
    /// The status the C ABI reports this error with.
    pub fn status(&self) -> Status {
        match self {
            Error::NotImplemented(_) => Status::NotImplemented,
            Error::OutOfMemory(_) | Error::AddressSpace { .. } => Status::OutOfMemory,
            Error::Pjrt(e) if e.is_resource_exhausted() => Status::OutOfMemory,
            Error::Index(_) => Status::Index,
            Error::InOp { source, .. } => source.status(),
            _ => Status::Runtime,
        }
    }
}

/// Fails with `Error::Invalid` and a formatted message.
#[macro_export]
macro_rules! invalid {
    ($($t:tt)*) => { return Err($crate::error::Error::Invalid(format!($($t)*))) };
}
