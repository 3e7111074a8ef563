//! gabang-apiserver: a Kubernetes-compatible API server over [`gabang_store`].
//!
//! Start at [`serve`]: it writes first-start credentials (`pki.rs`: CA, serving
//! certificate, bearer token, admin kubeconfig), then serves HTTPS (HTTP/1.1 and
//! HTTP/2) with one handler (`api.rs`) that authenticates, routes `/api` and `/apis`
//! paths through the resource table (`resources.rs`) and runs the verbs. Around it:
//! discovery (`discovery.rs`), OpenAPI v3 documents with schemas (`openapi.rs`),
//! the namespace lifecycle (`namespaces.rs`), defaulting and validation (`validate.rs`),
//! strategic merge patch (`smp.rs`), field ownership and server-side apply
//! (`managed.rs`), `pods/log` and `pods/exec` proxied to the node agent
//! (`proxy.rs`), label/field selectors (`selectors.rs`),
//! `kubectl get` tables (`table.rs`), `Status` errors (`status.rs`) and request
//! counters by verb (`stats.rs`, read through [`ServerHandle::requests`]).
//! Objects are JSON under `/registry/<plural>/[<namespace>/]<name>`; the
//! resourceVersion is the store's mod revision. Types (and typed decoding) come
//! from `k8s-openapi` with its `v1_32` feature.

mod api;
mod discovery;
mod managed;
mod namespaces;
mod openapi;
mod pki;
mod proxy;
mod resources;
mod selectors;
mod smp;
mod stats;
mod status;
mod table;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use gabang_store::Backend;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use tokio::sync::watch;

pub use api::MAX_BODY;
pub use resources::{ResourceDef, RESOURCES};
pub use stats::RequestCounts;
pub use status::ApiError;

/// Errors of starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("store: {0}")]
    Store(#[from] gabang_store::StoreError),
    #[error("listen on {}: {source}", path.display())]
    LocalSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Where the objects live.
#[derive(Clone)]
pub enum StoreSpec {
    /// A URL for [`gabang_store::open`] (`sqlite:///path`, `etcd://h:2379,...`).
    Url(String),
    /// An already opened store (shared with other parts of the process).
    Backend(Arc<dyn Backend>),
}

/// How to run the server.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Holds ca.crt, server.crt/key, admin.token and admin.kubeconfig.
    pub data_dir: PathBuf,
    pub store: StoreSpec,
}

/// A running server.
pub struct ServerHandle {
    /// The address actually bound.
    pub local_addr: SocketAddr,
    /// The admin kubeconfig (mode 0600).
    pub kubeconfig: PathBuf,
    /// The admin bearer token.
    pub token: String,
    /// PEM of the CA that signed the serving certificate.
    pub ca_pem: String,
    counters: Arc<stats::Counters>,
    /// The API (what every connection serves).
    app: axum::Router,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// Resource requests answered so far, by verb.
    pub fn requests(&self) -> RequestCounts {
        self.counters.snapshot()
    }

    /// Also serves the API as plain HTTP/1.1 on a Unix socket at `path` (mode 0600, replacing
    /// a stale socket file), for clients in this process or on this machine as root: the
    /// controllers and the agent of `gabang up` talk to the server this way, without TCP and
    /// TLS on every request and watch event. Requests still need the bearer token. Stops with
    /// [`ServerHandle::shutdown`].
    pub fn listen_local(&self, path: &std::path::Path) -> Result<(), ServeError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| ServeError::LocalSocket {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let app = self.app.clone();
        let mut rx = self.shutdown.subscribe();
        let path = path.to_path_buf();
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = rx.changed() => break,
                    r = listener.accept() => match r {
                        Ok((c, _)) => c,
                        Err(e) => {
                            tracing::warn!("accept on {}: {e}", path.display());
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                tokio::spawn(serve_connection(conn, app.clone()));
            }
            let _ = std::fs::remove_file(&path);
        });
        Ok(())
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (it only stops on [`ServerHandle::shutdown`]).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Serves the API on one accepted connection (TLS or the local socket) until it closes:
/// HTTP/1.1 with upgrades (exec, attach) or HTTP/2.
async fn serve_connection<I>(io: I, app: axum::Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .await;
}

/// Starts the API server; returns once it listens.
pub async fn serve(config: ServerConfig) -> Result<ServerHandle, ServeError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = match config.store {
        StoreSpec::Url(u) => gabang_store::open(&u).await?,
        StoreSpec::Backend(b) => b,
    };
    api::bootstrap(&store).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    let creds = pki::ensure(&config.data_dir, local_addr)?;

    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(creds.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("server.crt: {e}")))?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(creds.key_pem.as_bytes())
        .map_err(|e| ServeError::Tls(format!("server.key: {e}")))?;
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let counters = Arc::new(stats::Counters::default());
    let state = Arc::new(api::AppState {
        store,
        token: creds.token.clone(),
        addr: local_addr.to_string(),
        counters: counters.clone(),
        purging: Default::default(),
    });
    api::resume(&state).await?;
    let app = axum::Router::new().fallback(api::handle).with_state(state);
    let (tx, mut rx) = watch::channel(false);
    let served = app.clone();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = rx.changed() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    serve_connection(stream, app).await;
                }
            });
        }
    });
    Ok(ServerHandle {
        local_addr,
        kubeconfig: creds.kubeconfig,
        token: creds.token,
        ca_pem: creds.ca_pem,
        counters,
        app: served,
        shutdown: tx,
        task,
    })
}
