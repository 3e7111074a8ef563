//! `gabang_store::open` picks and opens the backend a store URL names.

mod support;

use gabang_store::StoreError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_sqlite_from_url_and_bare_path() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let rev = {
        let b = gabang_store::open(&url).await.unwrap();
        assert_eq!(b.name(), "sqlite");
        b.create("/u", b"1".to_vec(), None).await.unwrap()
    };
    // The same file as a bare path, after the first handle is gone.
    let b = gabang_store::open(&dir.path().join("state.db").display().to_string())
        .await
        .unwrap();
    assert_eq!(
        b.get("/u", None).await.unwrap().kv.unwrap().mod_revision,
        rev
    );
    // A path in a missing directory names the path.
    let err = gabang_store::open("/nonexistent-dir/state.db")
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("/nonexistent-dir/state.db"),
        "{err}"
    );
    assert!(matches!(
        gabang_store::open("mysql://x").await.err().unwrap(),
        StoreError::InvalidUrl { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_etcd_from_url() {
    let server = support::etcd_server::EtcdServer::start().await;
    let host = server.endpoint().trim_start_matches("http://").to_string();
    let b = gabang_store::open(&format!("etcd://{host}")).await.unwrap();
    assert_eq!(b.name(), "etcd");
    let rev = b.create("/u", b"1".to_vec(), None).await.unwrap();
    assert_eq!(b.current_revision().await.unwrap(), rev);
}
