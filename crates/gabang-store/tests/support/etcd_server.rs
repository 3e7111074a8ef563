//! A throwaway etcd on loopback for tests and the benchmark: random free ports, a
//! temporary data dir, killed (SIGKILL) and removed on drop.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gabang_store::EtcdBackend;

pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    bin: PathBuf,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local addr").port()
}

/// The etcd binary: $GABANG_ETCD_BIN, else `etcd` on PATH. Panics with the fix when
/// missing: these tests must fail, not pass, without etcd.
pub fn etcd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GABANG_ETCD_BIN") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("etcd");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "etcd binary not found on PATH (or $GABANG_ETCD_BIN): install Debian's \
         `etcd-server` package (apt-get install -y etcd-server); the etcd conformance \
         tests need a real etcd"
    );
}

impl EtcdServer {
    pub async fn start() -> EtcdServer {
        let dir = tempfile::tempdir().expect("temp dir for etcd");
        let mut s = EtcdServer {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            bin: etcd_bin(),
        };
        s.spawn().await;
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    async fn spawn(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .expect("etcd log file");
        let child = Command::new(&self.bin)
            .arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("test={peer}"))
            // Values up to the store's 1.5 MiB limit plus the request around them.
            .arg("--max-request-bytes")
            .arg("2097152")
            // Short ticks: 1 s leases expire promptly (etcd's minimum TTL derives from them).
            .arg("--heartbeat-interval")
            .arg("10")
            .arg("--election-timeout")
            .arg("100")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    let log = std::fs::read_to_string(self.dir.path().join("etcd.log"))
                        .unwrap_or_default();
                    panic!("etcd exited at start ({status}): {log}");
                }
            }
            if EtcdBackend::connect(&[self.endpoint()]).await.is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!("etcd at {} did not become ready", self.endpoint());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL the server (a crash), keeping its data dir.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same data dir and ports.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill9();
    }
}
