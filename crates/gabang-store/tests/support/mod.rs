//! Shared test support: backends to run the conformance suite against.

#![allow(dead_code)]

pub mod etcd_server;
pub mod suite;

use std::sync::Arc;

use gabang_store::{Backend, EtcdBackend, SqliteBackend, SqliteConfig};

/// A backend and what keeps it alive (temp dir or etcd process).
pub struct Harness {
    pub backend: Arc<dyn Backend>,
    _guard: Box<dyn std::any::Any + Send>,
}

pub async fn sqlite() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let b =
        tokio::task::spawn_blocking(move || SqliteBackend::open(&path, SqliteConfig::default()))
            .await
            .expect("join")
            .expect("open sqlite store");
    Harness {
        backend: Arc::new(b),
        _guard: Box::new(dir),
    }
}

pub async fn etcd() -> Harness {
    let server = etcd_server::EtcdServer::start().await;
    let b = EtcdBackend::connect(&[server.endpoint()])
        .await
        .expect("connect to test etcd");
    Harness {
        backend: Arc::new(b),
        _guard: Box::new(server),
    }
}
