//! gabang-store: the control plane's memory — a revisioned, watchable key-value store.
//!
//! Start at [`Backend`] (in `backend.rs`): get/list at a revision, create, CAS update,
//! delete, watch from a revision, compaction and leases. Two implementations:
//! [`SqliteBackend`] (embedded, the default: one kine-style log table in SQLite WAL,
//! a dedicated writer thread doing group commit, reader threads, an in-process
//! broadcast for watchers — see `sqlite/mod.rs`) and [`EtcdBackend`] (etcd v3, for
//! several API servers sharing one store — `etcd.rs`). [`open`] picks one from a URL.
//! The conformance suite in `tests/` runs the same checks against both.

mod backend;
mod error;
mod etcd;
mod sqlite;
mod types;

use std::sync::Arc;

pub use backend::{Backend, WatchStream};
pub use error::{Result, StoreError};
pub use etcd::{EtcdBackend, EtcdConfig};
pub use sqlite::{SqliteBackend, SqliteConfig, SqliteStats};
pub use types::{
    check_write, key_after, prefix_end, Deleted, Event, EventKind, GetResult, KeyValue, LeaseId,
    ListOptions, ListResult, Revision, MAX_KEY_BYTES, MAX_VALUE_BYTES,
};

/// Where a store lives, parsed from a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite:///path/state.db` or a bare path.
    Sqlite(std::path::PathBuf),
    /// `etcd://h1:2379,h2:2379` (endpoints as `http://host:port`).
    Etcd(Vec<String>),
}

impl StoreUrl {
    /// Parses `sqlite:///path`, a bare path, or `etcd://h1:2379,h2:2379`.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason: &str| StoreError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = url.strip_prefix("etcd://") {
            let endpoints: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| format!("http://{}", h.trim_end_matches('/')))
                .collect();
            if endpoints.is_empty() {
                return Err(bad(
                    "no etcd endpoint (expected etcd://host:port[,host:port...])",
                ));
            }
            return Ok(StoreUrl::Etcd(endpoints));
        }
        let path = if let Some(rest) = url.strip_prefix("sqlite://") {
            rest
        } else if url.contains("://") {
            return Err(bad("unknown scheme (expected sqlite:// or etcd://)"));
        } else {
            url
        };
        if path.is_empty() {
            return Err(bad("empty database path"));
        }
        Ok(StoreUrl::Sqlite(path.into()))
    }
}

/// Opens the store named by `url` (see [`StoreUrl::parse`]) with default settings.
pub async fn open(url: &str) -> Result<Arc<dyn Backend>> {
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => {
            let config = SqliteConfig::default();
            let b = tokio::task::spawn_blocking(move || SqliteBackend::open(&path, config))
                .await
                .map_err(|_| StoreError::Closed)??;
            Ok(Arc::new(b))
        }
        StoreUrl::Etcd(endpoints) => Ok(Arc::new(EtcdBackend::connect(&endpoints).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/gabang/state.db").unwrap(),
            StoreUrl::Sqlite("/var/lib/gabang/state.db".into())
        );
        assert_eq!(
            StoreUrl::parse("state.db").unwrap(),
            StoreUrl::Sqlite("state.db".into())
        );
        assert_eq!(
            StoreUrl::parse("etcd://h1:2379,h2:2379").unwrap(),
            StoreUrl::Etcd(vec!["http://h1:2379".into(), "http://h2:2379".into()])
        );
        assert!(StoreUrl::parse("etcd://").is_err());
        assert!(StoreUrl::parse("redis://x").is_err());
        assert!(StoreUrl::parse("sqlite://").is_err());
    }
}
