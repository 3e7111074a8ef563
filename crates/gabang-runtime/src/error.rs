//! Typed errors of the runtime.

use std::path::PathBuf;

/// Everything that can go wrong in `gabang-runtime`.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container name {name:?} is already in use by container {id}")]
    NameInUse { name: String, id: String },
    #[error("container reference {0:?} is ambiguous")]
    Ambiguous(String),
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]* is allowed")]
    InvalidName(String),
    #[error("container {id} is {status}: cannot {verb}")]
    BadState {
        id: String,
        status: String,
        verb: &'static str,
    },
    #[error("user {0:?}: {1}")]
    User(String, String),
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("no command specified (image has no ENTRYPOINT or CMD)")]
    NoCommand,
    #[error("shim: {0}")]
    Shim(String),
    #[error("container start failed (exit {code}): {message}")]
    StartFailed { code: i32, message: String },
    #[error("network: {0}")]
    Net(#[from] gabang_net::NetError),
    #[error("libcontainer: {0}")]
    Libcontainer(String),
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// Attach a path to an `io::Error`.
pub(crate) trait IoCtx<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoCtx<T> for std::result::Result<T, std::io::Error> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| RuntimeError::Io {
            path: path.into(),
            source,
        })
    }
}

pub(crate) fn sys(op: impl Into<String>, source: impl Into<std::io::Error>) -> RuntimeError {
    RuntimeError::Sys {
        op: op.into(),
        source: source.into(),
    }
}
