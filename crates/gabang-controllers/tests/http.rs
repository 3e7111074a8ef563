//! The controllers against the real gabang-apiserver (HTTPS on loopback, SQLite store in a
//! temp dir), with two fake nodes and the fake agent: a Deployment comes up, scales down
//! (graceful pod deletion finished by the agent), and is garbage-collected when deleted.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use gabang_apiserver::{serve, ServerConfig, ServerHandle, StoreSpec};
use gabang_controllers::cluster::Cluster;
use gabang_controllers::fixtures::{deployment, pod, seed};
use gabang_controllers::gc::Propagation;
use gabang_controllers::http::HttpCluster;
use gabang_controllers::nodelifecycle::{Config, SystemClock};
use gabang_controllers::runtime::{fake_agent_step, Manager};
use gabang_store::{Backend, SqliteBackend, SqliteConfig};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::chrono::Utc;

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The API server on loopback over a SQLite store in a temp dir (kept alive by the returned
/// runtime and dir).
fn start_server() -> (tokio::runtime::Runtime, tempfile::TempDir, ServerHandle) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Backend> = Arc::new(
        SqliteBackend::open(&dir.path().join("state.db"), SqliteConfig::default()).unwrap(),
    );
    let handle = rt
        .block_on(serve(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("pki"),
            store: StoreSpec::Backend(store),
        }))
        .unwrap();
    (rt, dir, handle)
}

#[test]
fn deployment_lifecycle_over_the_apiserver() {
    let (rt, _dir, handle) = start_server();
    let c = Arc::new(HttpCluster::new(handle.local_addr, &handle.ca_pem, &handle.token).unwrap());
    seed(&*c, &["n1", "n2"], "4", "8Gi", 110).unwrap();
    let mut m = Manager::new(c.clone(), Arc::new(SystemClock), Config::default());
    let spec = pod("default", "x", "100m", "64Mi").spec;
    c.create(&deployment("default", "web", 3, spec)).unwrap();
    let run_until = |m: &mut Manager<HttpCluster>, what: &str, f: &dyn Fn() -> bool| {
        for _ in 0..100 {
            let rep = m.sync().unwrap();
            assert!(rep.errors.is_empty(), "{:?}", rep.errors);
            fake_agent_step(c.as_ref(), &["n1", "n2"], Utc::now()).unwrap();
            if f() {
                return;
            }
            std::thread::sleep(StdDuration::from_millis(20));
        }
        panic!("never reached: {what}");
    };
    run_until(&mut m, "3 ready pods and deployment status", &|| {
        let pods = c.list::<Pod>().unwrap();
        let d: Deployment = c.get("default", "web").unwrap().unwrap();
        pods.len() == 3
            && pods
                .iter()
                .all(|p| ready(p) && p.spec.as_ref().unwrap().node_name.is_some())
            && d.status.and_then(|s| s.available_replicas) == Some(3)
    });
    let rs = c.list::<ReplicaSet>().unwrap();
    assert_eq!(rs.len(), 1);
    assert_eq!(
        rs[0]
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let nodes_used: std::collections::BTreeSet<String> = c
        .list::<Pod>()
        .unwrap()
        .iter()
        .filter_map(|p| p.spec.as_ref().unwrap().node_name.clone())
        .collect();
    assert_eq!(nodes_used.len(), 2, "spread over both nodes");

    let mut d: Deployment = c.get("default", "web").unwrap().unwrap();
    d.spec.as_mut().unwrap().replicas = Some(1);
    c.update(&d).unwrap();
    run_until(&mut m, "1 pod", &|| c.list::<Pod>().unwrap().len() == 1);

    c.delete::<Deployment>("default", "web", Propagation::Background)
        .unwrap();
    run_until(&mut m, "all collected", &|| {
        c.list::<Pod>().unwrap().is_empty() && c.list::<ReplicaSet>().unwrap().is_empty()
    });
    assert!(c.list::<Node>().unwrap().len() == 2);
    drop(rt);
}

/// The server's local socket (how `gabang up` connects its controllers and agent): the same
/// API as plain HTTP, a watch sees a change, a wrong token is refused, and the socket file
/// is gone after shutdown.
#[test]
fn local_socket_serves_the_api_with_the_token() {
    let (rt, dir, handle) = start_server();
    let sock = dir.path().join("api.sock");
    // A stale file from a killed process is replaced.
    std::fs::write(&sock, b"stale").unwrap();
    rt.block_on(async { handle.listen_local(&sock) }).unwrap();
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let local = HttpCluster::new(handle.local_addr, &handle.ca_pem, &handle.token)
        .unwrap()
        .via_local_socket(sock.clone());
    let tls = HttpCluster::new(handle.local_addr, &handle.ca_pem, &handle.token).unwrap();
    seed(&local, &["n1"], "4", "8Gi", 110).unwrap();
    local.create(&pod("default", "a", "100m", "64Mi")).unwrap();
    // Written over the socket, read over TLS, and the other way round.
    let names = |c: &HttpCluster| -> Vec<String> {
        let mut v: Vec<String> = c
            .list::<Pod>()
            .unwrap()
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&tls), ["a"]);
    tls.create(&pod("default", "b", "100m", "64Mi")).unwrap();
    assert_eq!(names(&local), ["a", "b"]);
    assert_eq!(local.list::<Node>().unwrap().len(), 1);

    // A watch over the socket sees a pod made over TLS.
    let (tx, rx) = std::sync::mpsc::channel();
    let watcher = std::thread::spawn(move || {
        let _ = local.watch_in::<Pod>("", "", "0", 10, |e| {
            if let gabang_controllers::http::WatchEvent::Added(p) = e {
                if p.metadata.name.as_deref() == Some("c") {
                    let _ = tx.send(());
                    return false;
                }
            }
            true
        });
    });
    std::thread::sleep(StdDuration::from_millis(200));
    tls.create(&pod("default", "c", "100m", "64Mi")).unwrap();
    rx.recv_timeout(StdDuration::from_secs(10))
        .expect("the watch over the local socket saw pod c");
    watcher.join().unwrap();

    // The token is still checked.
    let wrong = HttpCluster::new(handle.local_addr, &handle.ca_pem, "not-the-token")
        .unwrap()
        .via_local_socket(sock.clone());
    let err = wrong.list::<Pod>().unwrap_err().to_string();
    assert!(err.contains("401"), "{err}");

    rt.block_on(handle.shutdown());
    for _ in 0..100 {
        if !sock.exists() {
            break;
        }
        std::thread::sleep(StdDuration::from_millis(10));
    }
    assert!(!sock.exists(), "the socket file outlived the server");
}
