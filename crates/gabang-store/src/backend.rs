//! The [`Backend`] trait (the store's contract) and the [`WatchStream`] it hands out.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::types::{Deleted, Event, GetResult, LeaseId, ListOptions, ListResult, Revision};

/// A revisioned, watchable key-value store (kine's contract, etcd's semantics).
///
/// Every successful write returns a new cluster-wide revision, strictly larger than
/// every revision returned before. Reads can be made at an older revision until it is
/// compacted, after which they fail with [`crate::StoreError::Compacted`].
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs: "sqlite" or "etcd".
    fn name(&self) -> &'static str;

    /// The store's latest revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// The key at `revision` (None or 0: the latest). `Compacted` below the
    /// compaction point, `FutureRevision` above the current revision.
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<GetResult>;

    /// Keys starting with `prefix` ("" for all), in key order, one page at a time;
    /// see [`ListOptions`] for paging at one revision.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult>;

    /// Creates `key`; fails with `AlreadyExists` if it exists.
    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision>;

    /// Replaces `key`'s value if its mod revision is `expected_mod_revision`
    /// (`Conflict` otherwise, `NotFound` if it does not exist). `lease` replaces the
    /// key's lease (None detaches it).
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision>;

    /// Deletes `key`, if `expected_mod_revision` is given only when it matches.
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted>;

    /// Every change under `prefix` with a revision greater than `after_revision`, in
    /// revision order, exactly once, then live changes. `Compacted` if
    /// `after_revision` is older than the compaction point.
    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream>;

    /// Forgets the history up to `revision` (reads and watches before it then fail
    /// with `Compacted`). A revision at or below the current compaction point is a
    /// no-op.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// A new lease that expires `ttl_seconds` after its last keepalive.
    async fn lease_grant(&self, ttl_seconds: i64) -> Result<LeaseId>;

    /// Restarts the lease's TTL; returns the TTL in seconds.
    async fn lease_keepalive(&self, id: LeaseId) -> Result<i64>;

    /// Ends the lease now, deleting every key attached to it.
    async fn lease_revoke(&self, id: LeaseId) -> Result<()>;
}

/// Events of one watch, in revision order. Dropping it cancels the watch.
/// Yields `Err(Compacted)` and ends if the watcher fell behind a compaction.
pub struct WatchStream {
    rx: mpsc::Receiver<Result<Event>>,
}

impl WatchStream {
    pub(crate) fn new(rx: mpsc::Receiver<Result<Event>>) -> Self {
        Self { rx }
    }

    /// The next event; None when the store closed the watch.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for WatchStream {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
