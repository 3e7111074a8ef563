//! A server on a free loopback port with a temp data dir, and kubectl/curl helpers.

#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::Arc;

use gabang_apiserver::{serve, ServerConfig, ServerHandle, StoreSpec};
use gabang_store::{Backend, SqliteBackend, SqliteConfig};

pub struct TestServer {
    pub handle: ServerHandle,
    pub store: Arc<dyn Backend>,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let store: Arc<dyn Backend> =
        Arc::new(SqliteBackend::open(&db, SqliteConfig::default()).unwrap());
    let handle = serve(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("pki"),
        store: StoreSpec::Backend(store.clone()),
    })
    .await
    .unwrap();
    TestServer { handle, store, dir }
}

impl TestServer {
    /// Runs kubectl against the server (blocking; call from a multi-thread runtime).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.handle.kubeconfig)
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path())
            .output()
            .expect("kubectl runs")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl that must fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{}", self.handle.local_addr, path)
    }

    /// curl with the CA; `auth` adds the bearer token. Returns (http code, body).
    pub fn curl(&self, auth: bool, extra: &[&str], path: &str) -> (u16, String) {
        let ca = self.dir.path().join("pki/ca.crt");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert"])
            .arg(&ca)
            .args(["-w", "\n%{http_code}"]);
        if auth {
            cmd.args([
                "-H",
                &format!("Authorization: Bearer {}", self.handle.token),
            ]);
        }
        let out = cmd
            .args(extra)
            .arg(self.url(path))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// A request with the token and a JSON `body` of type `ctype`: (http code, the answer
    /// as JSON, or Null).
    pub fn send(
        &self,
        method: &str,
        ctype: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let ctype = format!("Content-Type: {ctype}");
        let body = body.to_string();
        let (code, b) = self.curl(true, &["-X", method, "-H", &ctype, "-d", &body], path);
        (code, serde_json::from_str(&b).unwrap_or_default())
    }

    /// GET with the token: (http code, the answer as JSON, or Null).
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, b) = self.curl(true, &[], path);
        (code, serde_json::from_str(&b).unwrap_or_default())
    }
}
