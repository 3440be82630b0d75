//! Error type: every `PJRT_Error` returned by the plugin becomes an [`Error::Pjrt`].

use std::fmt;
use std::path::PathBuf;

/// Status code of a PJRT error (mirrors `PJRT_Error_Code` / absl::StatusCode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
    /// A code this crate does not know (or `OK`, which should never be an error).
    Other(i32),
}

impl ErrorCode {
    /// Maps the raw C code.
    pub fn from_raw(code: i32) -> ErrorCode {
        use ErrorCode::*;
        match code {
            1 => Cancelled,
            2 => Unknown,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            other => Other(other),
        }
    }

    /// The raw C code.
    pub fn as_raw(self) -> i32 {
        use ErrorCode::*;
        match self {
            Cancelled => 1,
            Unknown => 2,
            InvalidArgument => 3,
            DeadlineExceeded => 4,
            NotFound => 5,
            AlreadyExists => 6,
            PermissionDenied => 7,
            ResourceExhausted => 8,
            FailedPrecondition => 9,
            Aborted => 10,
            OutOfRange => 11,
            Unimplemented => 12,
            Internal => 13,
            Unavailable => 14,
            DataLoss => 15,
            Unauthenticated => 16,
            Other(c) => c,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Other(c) => write!(f, "code {c}"),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

/// Errors of this crate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The plugin library could not be loaded or is not a usable PJRT plugin.
    #[error("cannot load PJRT plugin {path}: {msg}", path = path.display())]
    Load { path: PathBuf, msg: String },
    /// The plugin returned an error; `context` is the C function that failed.
    #[error("{context}: {code}: {msg}")]
    Pjrt {
        code: ErrorCode,
        msg: String,
        context: &'static str,
    },
    /// The input was rejected before calling the plugin (it would have crashed
    /// or misbehaved otherwise).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The plugin does not provide this C API function.
    #[error("PJRT plugin does not implement {0}")]
    Unimplemented(&'static str),
}

impl Error {
    /// True for out-of-memory conditions (`RESOURCE_EXHAUSTED`).
    pub fn is_resource_exhausted(&self) -> bool {
        matches!(
            self,
            Error::Pjrt {
                code: ErrorCode::ResourceExhausted,
                ..
            }
        )
    }

    /// The PJRT status code, if this error came from the plugin.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Pjrt { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::Invalid(msg.into())
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
