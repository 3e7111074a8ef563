//! The conformance suite: every function takes any [`Backend`] and asserts the
//! contract. `tests/conformance.rs` runs each against SQLite and against etcd.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use gabang_store::{
    Backend, EventKind, ListOptions, StoreError, WatchStream, MAX_KEY_BYTES, MAX_VALUE_BYTES,
};

/// Upper bound for waiting on an event that must come; a hang fails instead of
/// blocking the run forever.
const PATIENCE: Duration = Duration::from_secs(60);

async fn next_event(w: &mut WatchStream) -> gabang_store::Event {
    match tokio::time::timeout(PATIENCE, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch error: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no event within {PATIENCE:?}"),
    }
}

pub async fn crud_and_revisions(b: Arc<dyn Backend>) {
    b.create("/crud/first", b"f".to_vec(), None).await.unwrap();
    let r0 = b.current_revision().await.unwrap();
    let r1 = b.create("/crud/a", b"one".to_vec(), None).await.unwrap();
    assert!(r1 > r0);
    assert!(matches!(
        b.create("/crud/a", b"again".to_vec(), None).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let g = b.get("/crud/a", None).await.unwrap();
    let kv = g.kv.expect("created key");
    assert_eq!(kv.value, b"one");
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r1));
    assert!(g.revision >= r1);

    let r2 = b
        .update("/crud/a", b"two".to_vec(), r1, None)
        .await
        .unwrap();
    assert!(r2 > r1);
    let kv = b.get("/crud/a", None).await.unwrap().kv.unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"two"[..], r1, r2)
    );
    // Reads at an older revision see the older value.
    let old = b.get("/crud/a", Some(r1)).await.unwrap();
    assert_eq!(old.kv.unwrap().value, b"one");
    assert_eq!(old.revision, r1);
    assert!(b.get("/crud/a", Some(r0)).await.unwrap().kv.is_none());

    let d = b.delete("/crud/a", Some(r2)).await.unwrap();
    assert!(d.revision > r2);
    assert_eq!(d.prev.value, b"two");
    assert!(b.get("/crud/a", None).await.unwrap().kv.is_none());
    assert!(matches!(
        b.delete("/crud/a", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        b.update("/crud/a", b"x".to_vec(), d.revision, None).await,
        Err(StoreError::NotFound { .. })
    ));
    // Re-created key: new create revision.
    let r3 = b.create("/crud/a", b"three".to_vec(), None).await.unwrap();
    assert!(r3 > d.revision);
    let kv = b.get("/crud/a", None).await.unwrap().kv.unwrap();
    assert_eq!(kv.create_revision, r3);
    assert_eq!(b.current_revision().await.unwrap(), r3);
    // Reading the future is an error.
    assert!(matches!(
        b.get("/crud/a", Some(r3 + 100)).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

pub async fn cas_conflicts(b: Arc<dyn Backend>) {
    let r1 = b.create("/cas/k", b"0".to_vec(), None).await.unwrap();
    let r2 = b.update("/cas/k", b"1".to_vec(), r1, None).await.unwrap();
    // A stale revision loses, and says what it found.
    match b.update("/cas/k", b"stale".to_vec(), r1, None).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (r1, r2)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        b.delete("/cas/k", Some(r1)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(b.get("/cas/k", None).await.unwrap().kv.unwrap().value, b"1");

    // Concurrent read-modify-write increments: no update is lost.
    let writers = 16;
    let per_writer = 15;
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            for _ in 0..per_writer {
                loop {
                    let kv = b.get("/cas/counter", None).await.unwrap().kv;
                    let res = match kv {
                        None => b.create("/cas/counter", b"1".to_vec(), None).await,
                        Some(kv) => {
                            let n: u64 = String::from_utf8(kv.value).unwrap().parse().unwrap();
                            let next = (n + 1).to_string().into_bytes();
                            b.update("/cas/counter", next, kv.mod_revision, None).await
                        }
                    };
                    match res {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => {
                            conflicts += 1
                        }
                        Err(e) => panic!("increment failed: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let v = b.get("/cas/counter", None).await.unwrap().kv.unwrap().value;
    assert_eq!(
        String::from_utf8(v).unwrap(),
        (writers * per_writer).to_string(),
        "lost updates ({conflicts} conflicts were retried)"
    );
}

/// What a writer got acknowledged: revision → (key, kind, value).
type Acked = BTreeMap<i64, (String, EventKind, Vec<u8>)>;

async fn collect(mut w: WatchStream, until: i64) -> Vec<gabang_store::Event> {
    let mut out = Vec::new();
    loop {
        let ev = next_event(&mut w).await;
        let rev = ev.revision();
        out.push(ev);
        if rev >= until {
            return out;
        }
    }
}

pub async fn watch_exactly_once_in_order(b: Arc<dyn Backend>) {
    let start = b.current_revision().await.unwrap();
    let mut early = Vec::new();
    for _ in 0..6 {
        early.push(b.watch("/w/", start).await.unwrap());
    }
    let writers = 16;
    let ops = 30;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Acked::new();
            for n in 0..ops {
                let key = format!("/w/{w}/{}", n / 3);
                let value = format!("{w}-{n}").into_bytes();
                match n % 3 {
                    0 => {
                        let r = b.create(&key, value.clone(), None).await.unwrap();
                        acked.insert(r, (key, EventKind::Put, value));
                    }
                    1 => {
                        let cur = b.get(&key, None).await.unwrap().kv.unwrap();
                        let r = b
                            .update(&key, value.clone(), cur.mod_revision, None)
                            .await
                            .unwrap();
                        acked.insert(r, (key, EventKind::Put, value));
                    }
                    _ => {
                        let d = b.delete(&key, None).await.unwrap();
                        acked.insert(d.revision, (key, EventKind::Delete, Vec::new()));
                    }
                }
                // Noise outside the watched prefix.
                b.create(&format!("/wx/{w}/{n}"), b"x".to_vec(), None)
                    .await
                    .unwrap();
            }
            acked
        }));
    }
    // Late watchers start from the same revision while writes are under way: they
    // must catch up from history and then switch to live events without a gap or a
    // duplicate.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut late = Vec::new();
    for _ in 0..4 {
        late.push(b.watch("/w/", start).await.unwrap());
    }
    let mut acked = Acked::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(
        acked.len(),
        writers * ops,
        "every write has its own revision"
    );
    let last = *acked.keys().last().unwrap();
    let mut collectors = Vec::new();
    for w in early.into_iter().chain(late) {
        collectors.push(tokio::spawn(collect(w, last)));
    }
    // A watcher started after all writes sees them all from history alone.
    collectors.push(tokio::spawn(collect(
        b.watch("/w/", start).await.unwrap(),
        last,
    )));
    for c in collectors {
        let events = c.await.unwrap();
        let revs: Vec<i64> = events.iter().map(|e| e.revision()).collect();
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "events out of order or duplicated"
        );
        let seen: BTreeSet<i64> = revs.iter().copied().collect();
        let want: BTreeSet<i64> = acked.keys().copied().collect();
        assert_eq!(
            seen, want,
            "every acknowledged write exactly once, nothing else"
        );
        for ev in &events {
            let (key, kind, value) = &acked[&ev.revision()];
            assert_eq!(&ev.kv.key, key);
            assert_eq!(ev.kind, *kind);
            if *kind == EventKind::Put {
                assert_eq!(&ev.kv.value, value);
            } else {
                assert!(ev.prev.is_some(), "delete events carry the deleted value");
            }
        }
    }
}

pub async fn watch_resume_from_revision(b: Arc<dyn Backend>) {
    let mut revs = Vec::new();
    for i in 0..10 {
        revs.push(
            b.create(&format!("/r/{i}"), format!("v{i}").into_bytes(), None)
                .await
                .unwrap(),
        );
    }
    // Resume after the 5th write: exactly writes 6..10, then live ones.
    let mut w = b.watch("/r/", revs[4]).await.unwrap();
    for (i, rev) in revs.iter().enumerate().skip(5) {
        let ev = next_event(&mut w).await;
        assert_eq!(
            (ev.revision(), ev.kv.key.as_str()),
            (*rev, format!("/r/{i}").as_str())
        );
        assert!(ev.is_create());
    }
    let u = b
        .update("/r/3", b"new".to_vec(), revs[3], None)
        .await
        .unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(ev.revision(), u);
    assert!(!ev.is_create());
    assert_eq!(
        ev.prev.as_ref().map(|p| p.value.as_slice()),
        Some(&b"v3"[..])
    );
    let d = b.delete("/r/3", None).await.unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!((ev.kind, ev.revision()), (EventKind::Delete, d.revision));
    assert_eq!(ev.kv.key, "/r/3");
    assert_eq!(ev.prev.map(|p| p.value), Some(b"new".to_vec()));
    // From the current revision: only what comes next.
    let now = b.current_revision().await.unwrap();
    let mut w2 = b.watch("/r/", now).await.unwrap();
    let r = b.create("/r/next", b"n".to_vec(), None).await.unwrap();
    assert_eq!(next_event(&mut w2).await.revision(), r);
}

pub async fn compaction(b: Arc<dyn Backend>) {
    let mut revs = vec![b.create("/c/k", b"v0".to_vec(), None).await.unwrap()];
    for i in 1..6 {
        let prev = *revs.last().unwrap();
        revs.push(
            b.update("/c/k", format!("v{i}").into_bytes(), prev, None)
                .await
                .unwrap(),
        );
    }
    b.create("/c/gone", b"g".to_vec(), None).await.unwrap();
    b.delete("/c/gone", None).await.unwrap();
    let point = revs[3];
    b.compact(point).await.unwrap();
    assert!(matches!(
        b.get("/c/k", Some(revs[1])).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        b.list(
            "/c/",
            ListOptions {
                revision: Some(revs[1]),
                ..Default::default()
            }
        )
        .await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        b.watch("/c/", revs[1]).await,
        Err(StoreError::Compacted { .. })
    ));
    // At and after the compaction point everything still reads.
    assert_eq!(
        b.get("/c/k", Some(point)).await.unwrap().kv.unwrap().value,
        b"v3"
    );
    assert_eq!(b.get("/c/k", None).await.unwrap().kv.unwrap().value, b"v5");
    assert!(b.get("/c/gone", None).await.unwrap().kv.is_none());
    let mut w = b.watch("/c/k", point).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv.value, b"v4");
    assert_eq!(next_event(&mut w).await.kv.value, b"v5");
    // Compacting again below the point is a no-op; compacting the future is refused.
    b.compact(revs[2]).await.unwrap();
    let now = b.current_revision().await.unwrap();
    assert!(b.compact(now + 100).await.is_err());
    // Writes go on with increasing revisions after compaction.
    let r = b
        .update("/c/k", b"v6".to_vec(), revs[5], None)
        .await
        .unwrap();
    assert!(r > now);
}

pub async fn list_pagination_at_one_revision(b: Arc<dyn Backend>) {
    let mut want = BTreeMap::new();
    for i in 0..25 {
        let key = format!("/p/{i:02}");
        let value = format!("v{i}").into_bytes();
        b.create(&key, value.clone(), None).await.unwrap();
        want.insert(key, value);
    }
    b.create("/pz", b"outside".to_vec(), None).await.unwrap();
    b.create("/o/1", b"outside".to_vec(), None).await.unwrap();

    let all = b.list("/p/", ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 25);
    assert!(all.continue_key.is_none());

    let mut got = BTreeMap::new();
    let mut options = ListOptions {
        limit: 10,
        ..Default::default()
    };
    let mut pages = 0;
    let mut at = None;
    loop {
        let page = b.list("/p/", options.clone()).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 10);
        if let Some(at) = at {
            assert_eq!(page.revision, at, "every page from the same revision");
        }
        at = Some(page.revision);
        for kv in page.items {
            assert!(got.insert(kv.key, kv.value).is_none(), "no key twice");
        }
        // Change the store between pages: the pages must not see it.
        if pages == 1 {
            b.delete("/p/15", None).await.unwrap();
            b.create("/p/99", b"late".to_vec(), None).await.unwrap();
            let kv = b.get("/p/20", None).await.unwrap().kv.unwrap();
            b.update("/p/20", b"changed".to_vec(), kv.mod_revision, None)
                .await
                .unwrap();
        }
        match page.continue_key {
            Some(k) => {
                options.start_key = Some(k);
                options.revision = at;
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(got, want, "pages are one consistent snapshot");
    // The latest list shows the changes.
    let latest = b.list("/p/", ListOptions::default()).await.unwrap();
    let keys: BTreeSet<String> = latest.items.iter().map(|kv| kv.key.clone()).collect();
    assert!(!keys.contains("/p/15") && keys.contains("/p/99"));
    assert!(latest.revision > at.unwrap());
}

pub async fn leases_expire(b: Arc<dyn Backend>) {
    // Revoke: attached keys vanish at once, with delete events.
    let now = b.current_revision().await.unwrap();
    let mut w = b.watch("/l/", now).await.unwrap();
    let lease = b.lease_grant(60).await.unwrap();
    b.create("/l/revoked", b"r".to_vec(), Some(lease))
        .await
        .unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(ev.kv.lease, lease);
    b.lease_revoke(lease).await.unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.kind, ev.kv.key.as_str()),
        (EventKind::Delete, "/l/revoked")
    );
    assert!(b.get("/l/revoked", None).await.unwrap().kv.is_none());
    assert!(matches!(
        b.create("/l/x", b"x".to_vec(), Some(lease)).await,
        Err(StoreError::LeaseNotFound(_))
    ));

    // Expiry: keys on a 1 s lease vanish by themselves; other keys stay.
    let short = b.lease_grant(1).await.unwrap();
    let kept = b.lease_grant(2).await.unwrap();
    b.create("/l/a", b"a".to_vec(), Some(short)).await.unwrap();
    b.create("/l/b", b"b".to_vec(), Some(short)).await.unwrap();
    b.create("/l/kept", b"k".to_vec(), Some(kept))
        .await
        .unwrap();
    b.create("/l/plain", b"p".to_vec(), None).await.unwrap();
    for _ in 0..4 {
        assert_eq!(next_event(&mut w).await.kind, EventKind::Put);
    }
    // Keep `kept` alive while `short` expires.
    let keeper = {
        let b = b.clone();
        tokio::spawn(async move {
            loop {
                b.lease_keepalive(kept).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut deleted = BTreeSet::new();
    while deleted.len() < 2 {
        let ev = next_event(&mut w).await;
        assert_eq!(ev.kind, EventKind::Delete, "only the expired keys go");
        deleted.insert(ev.kv.key);
    }
    assert_eq!(
        deleted,
        BTreeSet::from(["/l/a".to_string(), "/l/b".to_string()])
    );
    assert!(b.get("/l/a", None).await.unwrap().kv.is_none());
    assert!(b.get("/l/kept", None).await.unwrap().kv.is_some());
    assert!(b.get("/l/plain", None).await.unwrap().kv.is_some());
    match b.lease_keepalive(short).await {
        Err(StoreError::LeaseNotFound(id)) => assert_eq!(id, short),
        other => panic!("keepalive of an expired lease: {other:?}"),
    }
    keeper.abort();
    // Once no longer renewed, `kept` expires too.
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.kind, ev.kv.key.as_str()),
        (EventKind::Delete, "/l/kept")
    );
    assert!(matches!(
        b.lease_grant(0).await,
        Err(StoreError::InvalidTtl(0))
    ));
}

pub async fn size_limits(b: Arc<dyn Backend>) {
    let before = b.current_revision().await.unwrap();
    let big = vec![7u8; MAX_VALUE_BYTES + 1];
    match b.create("/s/big", big.clone(), None).await {
        Err(StoreError::TooLarge { what, size, limit }) => {
            assert_eq!(
                (what, size, limit),
                ("value", MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES)
            )
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let long_key = format!("/s/{}", "k".repeat(MAX_KEY_BYTES));
    assert!(matches!(
        b.create(&long_key, b"v".to_vec(), None).await,
        Err(StoreError::TooLarge { what: "key", .. })
    ));
    assert_eq!(
        b.current_revision().await.unwrap(),
        before,
        "nothing written"
    );
    assert!(b.get("/s/big", None).await.unwrap().kv.is_none());

    // At the limit is fine; an oversized update leaves the old value.
    let at_limit = vec![1u8; MAX_VALUE_BYTES];
    let r = b.create("/s/max", at_limit.clone(), None).await.unwrap();
    assert!(matches!(
        b.update("/s/max", big, r, None).await,
        Err(StoreError::TooLarge { .. })
    ));
    let kv = b.get("/s/max", None).await.unwrap().kv.unwrap();
    assert_eq!((kv.mod_revision, kv.value.len()), (r, MAX_VALUE_BYTES));
    assert_eq!(kv.value, at_limit);
}
