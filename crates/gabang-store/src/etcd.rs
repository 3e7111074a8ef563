//! The etcd v3 backend: the same contract over `etcd-client`, for several API servers
//! sharing one store. Creates and CAS updates/deletes are etcd transactions comparing
//! the key's create/mod revision; a failed compare reads the key back to tell
//! `NotFound` from `Conflict`.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};
use tokio::sync::mpsc;

use crate::backend::{Backend, WatchStream};
use crate::error::{Result, StoreError};
use crate::types::{
    check_key, check_write, key_after, prefix_end, Deleted, Event, EventKind, GetResult, KeyValue,
    LeaseId, ListOptions, ListResult, Revision, MAX_VALUE_BYTES,
};

/// A store kept in etcd.
pub struct EtcdBackend {
    client: Client,
    kv: KvClient,
    watch: WatchClient,
    compactor: Option<tokio::task::JoinHandle<()>>,
}

/// Tuning of the etcd backend.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Automatic compaction keeps at least this many recent revisions (0: off, e.g.
    /// when etcd runs its own `--auto-compaction-retention`). Several API servers
    /// compacting the same etcd is harmless: an older point is a no-op.
    pub retain_revisions: i64,
    /// How often automatic compaction runs.
    pub compact_interval: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            retain_revisions: 10_000,
            compact_interval: Duration::from_secs(300),
        }
    }
}

impl Drop for EtcdBackend {
    fn drop(&mut self) {
        if let Some(c) = self.compactor.take() {
            c.abort();
        }
    }
}

/// Compacts to `current - retain` every `interval`, until aborted.
async fn auto_compact(kv: KvClient, config: EtcdConfig) {
    let mut tick = tokio::time::interval(config.compact_interval);
    tick.tick().await;
    let mut done = 0;
    loop {
        tick.tick().await;
        let current = match current_revision(&kv).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "etcd auto-compaction: reading the revision");
                continue;
            }
        };
        let target = current - config.retain_revisions;
        if target <= done {
            continue;
        }
        match compact(&kv, target).await {
            Ok(()) => done = target,
            Err(e) => tracing::warn!(error = %e, target, "etcd auto-compaction"),
        }
    }
}

async fn current_revision(kv: &KvClient) -> Result<Revision> {
    let resp = kv
        .clone()
        .get("\0", Some(GetOptions::new().with_count_only()))
        .await
        .map_err(etcd_err)?;
    Ok(header_rev(resp.header()))
}

async fn compact(kv: &KvClient, revision: Revision) -> Result<()> {
    match kv
        .clone()
        .compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => match map_err(e, revision, 0) {
            StoreError::Compacted { .. } => Ok(()),
            other => Err(other),
        },
    }
}

/// Turns etcd's error strings into the typed errors of the contract.
fn map_err(e: etcd_client::Error, revision: Revision, lease: LeaseId) -> StoreError {
    if let etcd_client::Error::LeaseKeepAliveError(m) = &e {
        if m.contains("lease not found") {
            return StoreError::LeaseNotFound(lease);
        }
    }
    if let etcd_client::Error::GRpcStatus(s) = &e {
        let m = s.message();
        if m.contains("has been compacted") {
            return StoreError::Compacted {
                requested: revision,
                compacted: 0,
            };
        }
        if m.contains("future revision") {
            return StoreError::FutureRevision {
                requested: revision,
                current: 0,
            };
        }
        if m.contains("too large") {
            return StoreError::TooLarge {
                what: "request",
                size: 0,
                limit: MAX_VALUE_BYTES,
            };
        }
        if m.contains("lease not found") {
            return StoreError::LeaseNotFound(lease);
        }
    }
    StoreError::Etcd(Box::new(e))
}

fn etcd_err(e: etcd_client::Error) -> StoreError {
    map_err(e, 0, 0)
}

fn to_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
    }
}

fn header_rev(h: Option<&etcd_client::ResponseHeader>) -> Revision {
    h.map_or(0, |h| h.revision())
}

/// Range options for `prefix` (all keys for an empty prefix).
fn prefix_range(prefix: &str, start: &[u8]) -> (Vec<u8>, GetOptions) {
    let start = if start.is_empty() {
        b"\0".as_slice()
    } else {
        start
    };
    match prefix_end(prefix.as_bytes()) {
        Some(end) => (start.to_vec(), GetOptions::new().with_range(end)),
        None => (start.to_vec(), GetOptions::new().with_from_key()),
    }
}

impl EtcdBackend {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port`) with default
    /// settings.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        Self::connect_with(endpoints, EtcdConfig::default()).await
    }

    /// Connects to the etcd cluster at `endpoints` (`http://host:port`).
    pub async fn connect_with(endpoints: &[String], config: EtcdConfig) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(etcd_err)?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let watch = client.watch_client().max_decoding_message_size(usize::MAX);
        // Fail now, not at the first call, when nothing answers.
        current_revision(&kv).await?;
        let compactor =
            (config.retain_revisions > 0).then(|| tokio::spawn(auto_compact(kv.clone(), config)));
        Ok(Self {
            client,
            kv,
            watch,
            compactor,
        })
    }

    /// Reads `key` back after a failed compare: NotFound or Conflict.
    fn compare_failed(
        key: &str,
        expected: Revision,
        resp: &etcd_client::TxnResponse,
    ) -> StoreError {
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r {
                if let Some(kv) = g.kvs().first() {
                    return StoreError::Conflict {
                        key: key.to_string(),
                        expected,
                        actual: kv.mod_revision(),
                    };
                }
            }
        }
        StoreError::NotFound {
            key: key.to_string(),
        }
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    fn name(&self) -> &'static str {
        "etcd"
    }

    async fn current_revision(&self) -> Result<Revision> {
        current_revision(&self.kv).await
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<GetResult> {
        check_key(key)?;
        let rev = revision.unwrap_or(0);
        let resp = self
            .kv
            .clone()
            .get(key, Some(GetOptions::new().with_revision(rev)))
            .await
            .map_err(|e| map_err(e, rev, 0))?;
        let at = if rev > 0 {
            rev
        } else {
            header_rev(resp.header())
        };
        Ok(GetResult {
            revision: at,
            kv: resp.kvs().first().map(to_kv),
        })
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let start = match &options.start_key {
            Some(s) if s.as_str() > prefix => s.as_bytes().to_vec(),
            _ => prefix.as_bytes().to_vec(),
        };
        let (key, opts) = prefix_range(prefix, &start);
        let rev = options.revision.unwrap_or(0);
        let opts = opts.with_revision(rev).with_limit(options.limit as i64);
        let resp = self
            .kv
            .clone()
            .get(key, Some(opts))
            .await
            .map_err(|e| map_err(e, rev, 0))?;
        let items: Vec<KeyValue> = resp.kvs().iter().map(to_kv).collect();
        let continue_key = if resp.more() {
            items.last().map(|kv| key_after(&kv.key))
        } else {
            None
        };
        Ok(ListResult {
            items,
            revision: if rev > 0 {
                rev
            } else {
                header_rev(resp.header())
            },
            continue_key,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        check_write(key, &value)?;
        let put = PutOptions::new().with_lease(lease.unwrap_or(0));
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, Some(put))]);
        let resp = self
            .kv
            .clone()
            .txn(txn)
            .await
            .map_err(|e| map_err(e, 0, lease.unwrap_or(0)))?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        Ok(header_rev(resp.header()))
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision> {
        check_write(key, &value)?;
        let put = PutOptions::new().with_lease(lease.unwrap_or(0));
        let mut compares = vec![Compare::mod_revision(
            key,
            CompareOp::Equal,
            expected_mod_revision,
        )];
        // mod_revision == 0 also matches a missing key: require existence.
        compares.push(Compare::version(key, CompareOp::Greater, 0));
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::put(key, value, Some(put))])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .kv
            .clone()
            .txn(txn)
            .await
            .map_err(|e| map_err(e, 0, lease.unwrap_or(0)))?;
        if !resp.succeeded() {
            return Err(Self::compare_failed(key, expected_mod_revision, &resp));
        }
        Ok(header_rev(resp.header()))
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        check_key(key)?;
        let mut compares = vec![Compare::version(key, CompareOp::Greater, 0)];
        if let Some(e) = expected_mod_revision {
            compares.push(Compare::mod_revision(key, CompareOp::Equal, e));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(etcd_err)?;
        if !resp.succeeded() {
            return Err(Self::compare_failed(
                key,
                expected_mod_revision.unwrap_or(0),
                &resp,
            ));
        }
        let revision = header_rev(resp.header());
        for r in resp.op_responses() {
            if let TxnOpResponse::Delete(d) = r {
                if let Some(prev) = d.prev_kvs().first() {
                    return Ok(Deleted {
                        revision,
                        prev: to_kv(prev),
                    });
                }
            }
        }
        Err(StoreError::NotFound {
            key: key.to_string(),
        })
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        // Same rule as the embedded store: history older than the compaction point is
        // gone. A range read at that revision tells (etcd's own watch check is one
        // revision looser).
        if after_revision > 0 {
            let (key, opts) = prefix_range(prefix, prefix.as_bytes());
            let opts = opts.with_revision(after_revision).with_count_only();
            match self.kv.clone().get(key, Some(opts)).await {
                Ok(_) => {}
                Err(e) => match map_err(e, after_revision, 0) {
                    StoreError::FutureRevision { .. } => {}
                    other => return Err(other),
                },
            }
        }
        let opts = if prefix.is_empty() {
            WatchOptions::new().with_all_keys()
        } else {
            WatchOptions::new().with_prefix()
        }
        .with_start_revision(after_revision + 1)
        .with_prev_key();
        let mut stream = self
            .watch
            .clone()
            .watch(prefix, Some(opts))
            .await
            .map_err(etcd_err)?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = tx.closed() => return,
                    msg = stream.message() => msg,
                };
                let resp = match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(etcd_err(e))).await;
                        return;
                    }
                };
                if resp.canceled() {
                    let err = if resp.compact_revision() > 0 {
                        StoreError::Compacted {
                            requested: after_revision,
                            compacted: resp.compact_revision(),
                        }
                    } else {
                        StoreError::Etcd(Box::new(etcd_client::Error::WatchError(
                            resp.cancel_reason().to_string(),
                        )))
                    };
                    let _ = tx.send(Err(err)).await;
                    return;
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let kind = match ev.event_type() {
                        EventType::Put => EventKind::Put,
                        EventType::Delete => EventKind::Delete,
                    };
                    let event = Event {
                        kind,
                        kv: to_kv(kv),
                        prev: ev.prev_kv().map(to_kv),
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(WatchStream::new(rx))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        compact(&self.kv, revision).await
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> Result<LeaseId> {
        if ttl_seconds < 1 {
            return Err(StoreError::InvalidTtl(ttl_seconds));
        }
        let resp = self
            .client
            .lease_client()
            .grant(ttl_seconds, None)
            .await
            .map_err(etcd_err)?;
        Ok(resp.id())
    }

    async fn lease_keepalive(&self, id: LeaseId) -> Result<i64> {
        let (mut keeper, mut stream) = self
            .client
            .lease_client()
            .keep_alive(id)
            .await
            .map_err(|e| map_err(e, 0, id))?;
        keeper.keep_alive().await.map_err(|e| map_err(e, 0, id))?;
        match stream.message().await.map_err(|e| map_err(e, 0, id))? {
            Some(r) if r.ttl() > 0 => Ok(r.ttl()),
            _ => Err(StoreError::LeaseNotFound(id)),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.client
            .lease_client()
            .revoke(id)
            .await
            .map_err(|e| map_err(e, 0, id))?;
        Ok(())
    }
}
