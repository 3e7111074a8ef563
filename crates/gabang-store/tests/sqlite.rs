//! Behaviour only the embedded store has: reopening, the single-process lock, group
//! commit, automatic bounded compaction, and watchers that fall behind the broadcast.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gabang_store::{Backend, ListOptions, SqliteBackend, SqliteConfig, StoreError};

const PATIENCE: Duration = Duration::from_secs(60);

async fn open(path: &Path, config: SqliteConfig) -> Arc<SqliteBackend> {
    let path = path.to_path_buf();
    Arc::new(
        tokio::task::spawn_blocking(move || SqliteBackend::open(&path, config))
            .await
            .unwrap()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopen_keeps_data_revisions_and_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (rev, lease) = {
        let b = open(&path, SqliteConfig::default()).await;
        let lease = b.lease_grant(1).await.unwrap();
        b.create("/a", b"1".to_vec(), None).await.unwrap();
        let rev = b
            .create("/leased", b"l".to_vec(), Some(lease))
            .await
            .unwrap();
        // A second process (here: a second open) is refused while it is open.
        let p = path.clone();
        let second = tokio::task::spawn_blocking(move || {
            SqliteBackend::open(&p, SqliteConfig::default()).map(|_| ())
        })
        .await
        .unwrap();
        assert!(matches!(second, Err(StoreError::Locked { .. })));
        (rev, lease)
    };
    let b = open(&path, SqliteConfig::default()).await;
    assert_eq!(b.current_revision().await.unwrap(), rev);
    assert_eq!(b.get("/a", None).await.unwrap().kv.unwrap().value, b"1");
    // The lease survived the restart and still expires, with a delete event.
    let mut w = b.watch("/leased", rev).await.unwrap();
    let ev = tokio::time::timeout(PATIENCE, w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.kv.key, "/leased");
    assert!(ev.revision() > rev);
    assert!(matches!(
        b.lease_keepalive(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(&dir.path().join("state.db"), SqliteConfig::default()).await;
    let mut tasks = Vec::new();
    for i in 0..512 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            b.create(&format!("/g/{i}"), vec![1; 64], None)
                .await
                .unwrap()
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap());
    }
    revs.sort();
    revs.dedup();
    assert_eq!(revs.len(), 512, "every write has its own revision");
    let stats = b.stats();
    assert_eq!(stats.requests, 512);
    assert!(
        stats.commits < stats.requests,
        "group commit: {} commits for {} writes",
        stats.commits,
        stats.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn automatic_compaction_is_bounded_and_removes_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let config = SqliteConfig {
        retain_revisions: 20,
        compact_interval: Duration::from_millis(50),
        compact_chunk: 7,
        ..Default::default()
    };
    let b = open(&path, config).await;
    let mut revs = vec![b.create("/k", b"0".to_vec(), None).await.unwrap()];
    for i in 1..100 {
        let prev = *revs.last().unwrap();
        revs.push(
            b.update("/k", i.to_string().into_bytes(), prev, None)
                .await
                .unwrap(),
        );
    }
    // An explicit compaction in the middle, then more history on top of it.
    b.compact(revs[50]).await.unwrap();
    for i in 100..200 {
        let prev = *revs.last().unwrap();
        revs.push(
            b.update("/k", i.to_string().into_bytes(), prev, None)
                .await
                .unwrap(),
        );
    }
    let last = b.create("/other", b"o".to_vec(), None).await.unwrap();
    // Wait for automatic compaction to move well past the explicit point.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match b.get("/k", Some(revs[150])).await {
            Err(StoreError::Compacted { .. }) => break,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no automatic compaction"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Recent history is kept...
    assert_eq!(
        b.get("/k", Some(revs[190]))
            .await
            .unwrap()
            .kv
            .unwrap()
            .value,
        b"190"
    );
    // ...and every older row is physically gone, across both compactions: what stays
    // is /k's rows from the compaction point (last - 20) on, and /other.
    let ro = rusqlite::Connection::open(&path).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let rows: i64 = ro
            .query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))
            .unwrap();
        let oldest: i64 = ro
            .query_row("SELECT MIN(id) FROM kv", [], |r| r.get(0))
            .unwrap();
        assert!(oldest <= last - 20, "compacted past the retained revisions");
        if rows == 21 {
            assert_eq!(oldest, last - 20);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows} rows left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = b.list("/", ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);
}

fn tiny_buffers() -> SqliteConfig {
    SqliteConfig {
        broadcast_capacity: 16,
        watch_buffer: 1,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_watcher_catches_up_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(&dir.path().join("state.db"), tiny_buffers()).await;
    let start = b.current_revision().await.unwrap();
    let mut w = b.watch("/s/", start).await.unwrap();
    // The watcher reads nothing while 600 writes go by: it overflows the broadcast.
    let mut tasks = Vec::new();
    for t in 0..6 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..100 {
                revs.push(
                    b.create(&format!("/s/{t}/{i}"), vec![0; 10], None)
                        .await
                        .unwrap(),
                );
            }
            revs
        }));
    }
    let mut want = Vec::new();
    for t in tasks {
        want.extend(t.await.unwrap());
    }
    want.sort();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let ev = tokio::time::timeout(PATIENCE, w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push(ev.revision());
    }
    assert_eq!(got, want, "in order, exactly once, despite lagging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watcher_behind_a_compaction_gets_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(&dir.path().join("state.db"), tiny_buffers()).await;
    let start = b.current_revision().await.unwrap();
    let mut w = b.watch("/c/", start).await.unwrap();
    let mut rev = b.create("/c/k", b"0".to_vec(), None).await.unwrap();
    for i in 0..300 {
        rev = b
            .update("/c/k", i.to_string().into_bytes(), rev, None)
            .await
            .unwrap();
    }
    b.compact(rev).await.unwrap();
    let mut saw_compacted = false;
    while let Some(item) = tokio::time::timeout(PATIENCE, w.next()).await.unwrap() {
        match item {
            Ok(ev) => assert!(ev.revision() <= rev),
            Err(StoreError::Compacted { .. }) => {
                saw_compacted = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(saw_compacted, "the watcher learns its history is gone");
    assert!(w.next().await.is_none(), "and the watch ends");
}
