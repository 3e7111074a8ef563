//! The one error type every backend returns.

use crate::types::{LeaseId, Revision};

/// Everything a [`crate::Backend`] call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `get`/`update`/`delete` of a key that does not exist (or is deleted).
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// `create` of a key that already exists.
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    /// Compare-and-swap failed: the key's modification revision is not the expected one.
    #[error("conflict on key {key:?}: expected mod revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    /// The revision asked for is older than the compaction point (HTTP 410 Gone).
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The revision asked for is newer than the store's current revision.
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// A key or value over the size limit; nothing was written.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes; nothing was written")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// A key that is empty.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// A lease that does not exist (never granted, revoked or expired).
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),
    /// A TTL that is not positive.
    #[error("invalid lease TTL {0}: must be at least 1 second")]
    InvalidTtl(i64),
    /// The store URL could not be understood.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Another process holds the embedded store open.
    #[error("store {path} is locked by another process")]
    Locked { path: String },
    /// SQLite failed.
    #[error("sqlite store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// Filesystem failure of the embedded store.
    #[error("store file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// etcd failed (connection, RPC, ...).
    #[error("etcd: {0}")]
    Etcd(#[source] Box<etcd_client::Error>),
    /// A write batch failed as a whole (disk error); nothing of it was written.
    #[error("write batch failed, nothing written: {0}")]
    BatchFailed(String),
    /// The store was closed (its threads are gone).
    #[error("store is closed")]
    Closed,
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
