//! The agent's HTTPS endpoint (kubelet's port 10250 role) that the API server proxies
//! `kubectl logs` and `kubectl exec` to: `GET /containerLogs/{ns}/{pod}/{container}` and
//! `GET|POST /exec/{ns}/{pod}/{container}` (websocket channel protocols v4/v5). Only callers
//! with the API server's bearer token get in.
//!
//! [`start`] binds, makes a self-signed certificate (rcgen) and serves HTTP/1.1 over TLS on its
//! own thread and tokio runtime. Containers are found by their runtime labels (`server/find.rs`),
//! logs are read from the runtime's JSON-lines log (`server/logs.rs`), exec runs the runtime's
//! exec shim behind a websocket (`server/exec.rs`).

mod exec;
mod find;
mod logs;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::{AgentError, Result};

/// Where the endpoint listens and the bearer token every caller must send.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The token callers send as `Authorization: Bearer <token>` (the API server's).
    pub token: String,
}

/// A running endpoint; stops on drop or with [`EndpointHandle::stop`].
pub struct EndpointHandle {
    /// The address actually bound.
    pub local_addr: SocketAddr,
    /// PEM of the self-signed serving certificate.
    pub cert_pem: String,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EndpointHandle {
    /// Stops accepting connections, ends open streams and waits for the server thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EndpointHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// What every request handler shares.
struct Shared {
    token: String,
    runtime: Arc<gabang_runtime::Runtime>,
}

/// An HTTP error answered as `text/plain`, the way kubelet answers.
#[derive(Debug)]
pub(crate) struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    fn into_response(self) -> Response<Body> {
        text(self.status, self.message)
    }
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(message + "\n")).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Starts the endpoint on its own thread; returns once it listens.
pub fn start(cfg: EndpointConfig, runtime: Arc<gabang_runtime::Runtime>) -> Result<EndpointHandle> {
    let listener = std::net::TcpListener::bind(cfg.listen)
        .map_err(|e| AgentError::Other(format!("endpoint: listen on {}: {e}", cfg.listen)))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| AgentError::Other(format!("endpoint: {}: {e}", cfg.listen)))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| AgentError::Other(format!("endpoint: {local_addr}: {e}")))?;
    let (acceptor, cert_pem) = tls_acceptor(local_addr)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("gabang-endpoint")
        .build()
        .map_err(|e| AgentError::Other(format!("endpoint: tokio runtime: {e}")))?;
    let shared = Arc::new(Shared {
        token: cfg.token,
        runtime,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("gabang-endpoint".into())
        .spawn(move || {
            rt.block_on(serve(listener, acceptor, shared, stop_rx));
            // Open log streams end when their receivers go away; exec shims keep running
            // until their process ends, so do not wait long for blocking tasks.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        })
        .map_err(|e| AgentError::Other(format!("endpoint: spawn thread: {e}")))?;
    Ok(EndpointHandle {
        local_addr,
        cert_pem,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// A self-signed serving certificate for `localhost` and the listen address.
fn tls_acceptor(addr: SocketAddr) -> Result<(tokio_rustls::TlsAcceptor, String)> {
    let tls = |e: &dyn std::fmt::Display| AgentError::Other(format!("endpoint TLS setup: {e}"));
    let mut names = vec!["localhost".to_string(), addr.ip().to_string()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_string());
        }
    }
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(names).map_err(|e| tls(&e))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        cert.pem(),
    ))
}

async fn serve(
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("endpoint: {e}");
            return;
        }
    };
    loop {
        let tcp = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!("endpoint accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Exec frames are small writes: no Nagle delay behind delayed ACKs.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            // A client that never finishes the handshake (or its headers) is dropped.
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
            let Ok(Ok(stream)) = handshake.await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// How long a client may take for the TLS handshake and for a request's headers.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn authorized(token: &str, req: &Request<Incoming>) -> bool {
    let Some(got) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (got.trim().as_bytes(), token.as_bytes());
    !b.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The parsed query: repeated keys kept in order (`command=…&command=…`).
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(req: &Request<Incoming>) -> Self {
        Query(
            req.uri()
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// A boolean flag given as `1`/`true` under any of `names`.
    pub(crate) fn flag(&self, names: &[&str]) -> bool {
        names
            .iter()
            .filter_map(|n| self.get(n))
            .any(|v| matches!(v, "1" | "true" | "True" | "TRUE"))
    }
    /// A non-negative number, or a 400 naming the parameter.
    pub(crate) fn number(&self, k: &str) -> std::result::Result<Option<u64>, HttpError> {
        match self.get(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                HttpError::bad_request(format!("{k}: {v:?} is not a non-negative integer"))
            }),
        }
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    if !authorized(&shared.token, &req) {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized".into());
    }
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let query = Query::parse(&req);
    let method = req.method().clone();
    let result = match (&method, segs.as_slice()) {
        (&Method::GET, ["containerLogs", ns, pod, rest @ ..]) if rest.len() <= 1 => {
            let target = find::Target::new(ns, pod, rest.first().copied());
            logs::serve(&shared.runtime, target, &query).await
        }
        (&Method::GET | &Method::POST, ["exec", ns, pod, rest @ ..]) if rest.len() <= 1 => {
            let target = find::Target::new(ns, pod, rest.first().copied());
            exec::serve(&shared.runtime, target, &query, req).await
        }
        (_, ["containerLogs" | "exec", ..]) => Err(HttpError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(HttpError::not_found(format!("{path}: not found"))),
    };
    result.unwrap_or_else(HttpError::into_response)
}
