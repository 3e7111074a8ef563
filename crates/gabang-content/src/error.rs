//! Typed errors of the content store.

use std::path::PathBuf;

/// Everything that can go wrong in the content store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid digest {0:?}: expected ALGO:HEX with sha256 (64 hex) or sha512 (128 hex)")]
    InvalidDigest(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} not found in the content store")]
    BlobNotFound(String),
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {0:?} not found (see `gabang images`)")]
    ImageNotFound(String),
    #[error("reference {reference:?} is ambiguous: it matches {count} images")]
    AmbiguousImage { reference: String, count: usize },
    #[error("image {image} is in use by {users}; use -f to remove it anyway")]
    ImageInUse { image: String, users: String },
    #[error("unsafe layer entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    #[error("layer rejected: {0}")]
    LayerLimit(String),
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{path}: {reason}")]
    BadArchive { path: PathBuf, reason: String },
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("json {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a context string to io errors: `fs::read(p).ctx(|| format!("read {p:?}"))`.
pub trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: f(),
            source,
        })
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::Io {
            context: f(),
            source: e.into(),
        })
    }
}

impl Error {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            what: what.into(),
            source,
        }
    }
}
