//! [`HttpCluster`]: the [`Cluster`] trait over a Kubernetes-compatible API server (ours, or
//! a real one) via HTTPS + bearer token.
//!
//! Blocking calls on a private tokio runtime (one worker): call it from plain threads
//! (the controller manager's), never from inside async code. HTTP/1.1 over rustls with the
//! server's CA as the only root; requests reuse kept-alive connections, each watch has its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::Resource;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

use crate::cluster::{
    ApiResource, Cluster, ClusterError, MetaObject, Object, StopSignal, WatchCluster,
};

/// A sent request: its response, the sender (the connection lives while it does) and the
/// connection task.
type Sent = (
    http::Response<hyper::body::Incoming>,
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
);
use crate::gc::Propagation;

/// One event of a watch stream ([`HttpCluster::watch_in`]).
#[derive(Debug, Clone)]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    /// A progress mark: the resourceVersion to resume from.
    Bookmark(String),
    /// The server ended the watch with an error (e.g. 410 Gone: relist).
    Error(String),
}

impl<K> WatchEvent<K> {
    /// The same event with its object converted by `f`.
    pub fn try_map<T, E>(self, f: impl FnOnce(K) -> Result<T, E>) -> Result<WatchEvent<T>, E> {
        Ok(match self {
            WatchEvent::Added(o) => WatchEvent::Added(f(o)?),
            WatchEvent::Modified(o) => WatchEvent::Modified(f(o)?),
            WatchEvent::Deleted(o) => WatchEvent::Deleted(f(o)?),
            WatchEvent::Bookmark(v) => WatchEvent::Bookmark(v),
            WatchEvent::Error(e) => WatchEvent::Error(e),
        })
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
pub fn encode_query(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Requests an [`HttpCluster`] has sent, by verb (see [`HttpCluster::stats`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestStats {
    /// GET of a collection (LIST), not watches.
    pub lists: u64,
    /// Watch requests opened.
    pub watches: u64,
    /// GET of one object.
    pub gets: u64,
    /// POST, PUT, DELETE.
    pub writes: u64,
}

#[derive(Default)]
struct Counters {
    lists: AtomicU64,
    watches: AtomicU64,
    gets: AtomicU64,
    writes: AtomicU64,
}

/// An idle kept-alive connection.
struct Pooled {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<hyper::Result<()>>,
}

/// Idle connections kept for reuse (one TLS handshake per connection, not per request).
const POOL_MAX: usize = 8;

pub struct HttpCluster {
    keep_alive: bool,
    pool: std::sync::Mutex<Vec<Pooled>>,
    counters: Counters,
    addr: SocketAddr,
    host: String,
    token: String,
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    /// Plain HTTP over this Unix socket instead of TCP + TLS to `addr`
    /// ([`HttpCluster::via_local_socket`]).
    local: Option<std::path::PathBuf>,
    rt: tokio::runtime::Runtime,
}

fn api(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Api(e.to_string())
}

fn collection<K: Resource>(ns: &str) -> String {
    let base = if K::GROUP.is_empty() {
        format!("/api/{}", K::VERSION)
    } else {
        format!("/apis/{}/{}", K::GROUP, K::VERSION)
    };
    if ns.is_empty() {
        format!("{base}/{}", K::URL_PATH_SEGMENT)
    } else {
        format!("{base}/namespaces/{ns}/{}", K::URL_PATH_SEGMENT)
    }
}

/// `/api/v1/pods`, `/apis/apps/v1/namespaces/x/deployments?..`: a collection, not an object.
fn is_list_path(path: &str, core: bool) -> bool {
    let p = path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    let base = if core { 2 } else { 3 };
    segs.len() == base + 1 || (segs.len() == base + 3 && segs.get(base) == Some(&"namespaces"))
}

fn error_of(kind: &str, code: u16, body: &[u8], key: String) -> ClusterError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v["message"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let kind = kind.to_string();
    match (code, v["reason"].as_str()) {
        (404, _) => ClusterError::NotFound { kind, key },
        (409, Some("AlreadyExists")) => ClusterError::AlreadyExists { kind, key },
        (409, _) => ClusterError::Conflict { kind, key, message },
        (400 | 422, _) => ClusterError::Invalid { kind, key, message },
        _ => ClusterError::Api(format!("{kind} {key}: HTTP {code}: {message}")),
    }
}

fn decode<K: Object>(mut v: Value) -> Result<K, ClusterError> {
    // List items may come without apiVersion/kind.
    v["apiVersion"] = json!(K::API_VERSION);
    v["kind"] = json!(K::KIND);
    serde_json::from_value(v).map_err(|e| ClusterError::Api(format!("decode {}: {e}", K::KIND)))
}

/// A connection: its request sender and the task that runs it.
type Connection = (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
);

/// The HTTP/1.1 handshake on a connected stream (`server` names it in errors); the
/// connection's task is spawned on the current runtime.
async fn http1_handshake<I>(
    io: I,
    server: &dyn std::fmt::Display,
) -> Result<Connection, ClusterError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ClusterError::Unreachable(format!("HTTP handshake with {server}: {e}")))?;
    Ok((sender, tokio::spawn(conn)))
}

impl HttpCluster {
    /// Connect to `addr` trusting only `ca_pem`, authenticating with `token`.
    pub fn new(addr: SocketAddr, ca_pem: &str, token: &str) -> Result<Self, ClusterError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(c.map_err(|e| api(format!("CA PEM: {e}")))?)
                .map_err(|e| api(format!("CA certificate: {e}")))?;
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(api)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        // One worker runs the connections; callers' threads drive their own requests, so
        // several threads (informers, the manager) may block on requests at once.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gabang-http")
            .enable_all()
            .build()
            .map_err(|e| api(format!("runtime: {e}")))?;
        Ok(HttpCluster {
            keep_alive: true,
            pool: std::sync::Mutex::new(Vec::new()),
            counters: Counters::default(),
            addr,
            host: addr.to_string(),
            token: token.to_string(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            server_name: ServerName::IpAddress(addr.ip().into()),
            local: None,
            rt,
        })
    }

    /// Sends every request over the API server's local socket (plain HTTP/1.1, see
    /// `gabang_apiserver::ServerHandle::listen_local`) instead of TCP + TLS: for clients in
    /// the server's own process (`gabang up`), where TLS protects nothing and costs CPU on
    /// both ends of every request and watch event. The bearer token is still sent.
    pub fn via_local_socket(mut self, path: std::path::PathBuf) -> Self {
        self.local = Some(path);
        self
    }

    /// `false`: a new connection per request (how this client worked before; benchmarks).
    pub fn with_keep_alive(mut self, on: bool) -> Self {
        self.keep_alive = on;
        self
    }

    /// Requests sent so far.
    pub fn stats(&self) -> RequestStats {
        let c = &self.counters;
        RequestStats {
            lists: c.lists.load(Ordering::Relaxed),
            watches: c.watches.load(Ordering::Relaxed),
            gets: c.gets.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
        }
    }

    /// One request; returns (status, body). Goes over a kept-alive connection when one is
    /// idle (a request it could not send goes on a new one); the connection is kept after.
    fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
        accept: &str,
    ) -> Result<(u16, Bytes), ClusterError> {
        let body = match body {
            Some(v) => serde_json::to_vec(&v).map_err(api)?,
            None => Vec::new(),
        };
        self.rt.block_on(async {
            let mut req = self.build_request(method, path, Some(body), accept)?;
            while let Some(mut c) = self.take_pooled() {
                if c.sender.ready().await.is_err() {
                    c.task.abort();
                    continue;
                }
                match c.sender.try_send_request(req).await {
                    Ok(resp) => return self.finish(resp, c).await,
                    Err(mut e) => {
                        c.task.abort();
                        match e.take_message() {
                            // Never sent: safe to send again.
                            Some(r) => req = r,
                            None => return Err(api(e.into_error())),
                        }
                    }
                }
            }
            let (mut sender, task) = self.connect().await?;
            match sender.send_request(req).await {
                Ok(resp) => self.finish(resp, Pooled { sender, task }).await,
                Err(e) => {
                    task.abort();
                    Err(api(e))
                }
            }
        })
    }

    fn take_pooled(&self) -> Option<Pooled> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(c) = pool.pop() {
            if !c.sender.is_closed() {
                return Some(c);
            }
            c.task.abort();
        }
        None
    }

    /// Read the whole response, then keep the connection for the next request.
    async fn finish(
        &self,
        resp: http::Response<hyper::body::Incoming>,
        c: Pooled,
    ) -> Result<(u16, Bytes), ClusterError> {
        let status = resp.status().as_u16();
        let bytes = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                c.task.abort();
                return Err(api(e));
            }
        };
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if self.keep_alive && pool.len() < POOL_MAX && !c.sender.is_closed() {
            pool.push(c);
        } else {
            c.task.abort();
        }
        Ok((status, bytes))
    }

    fn build_request(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
        accept: &str,
    ) -> Result<http::Request<Full<Bytes>>, ClusterError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("authorization", format!("Bearer {}", self.token));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        req.header("accept", accept)
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(api)
    }

    /// A new connection (TCP, TLS, HTTP/1.1 handshake) with its task running.
    async fn connect(&self) -> Result<Connection, ClusterError> {
        if let Some(path) = &self.local {
            let unix = tokio::net::UnixStream::connect(path).await.map_err(|e| {
                ClusterError::Unreachable(format!("connect {}: {e}", path.display()))
            })?;
            return http1_handshake(unix, &path.display()).await;
        }
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| ClusterError::Unreachable(format!("connect {}: {e}", self.addr)))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| ClusterError::Unreachable(format!("TLS to {}: {e}", self.addr)))?;
        http1_handshake(tls, &self.addr).await
    }

    /// Connect (TLS), send one request and return its response with the connection (keep
    /// the sender while reading the body; abort the task when done). `body: Some` sends JSON.
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
        accept: &str,
    ) -> Result<Sent, ClusterError> {
        let (mut sender, conn) = self.connect().await?;
        let req = self.build_request(method, path, body, accept)?;
        match sender.send_request(req).await {
            Ok(resp) => Ok((resp, sender, conn)),
            Err(e) => {
                conn.abort();
                Err(api(e))
            }
        }
    }

    /// List `K` in `namespace` ("" = all) matching `field_selector` ("" = all); returns the
    /// items and the list's resourceVersion (to start a watch from).
    pub fn list_in<K: Object>(
        &self,
        namespace: &str,
        field_selector: &str,
    ) -> Result<(Vec<K>, String), ClusterError> {
        let mut path = collection::<K>(namespace);
        if !field_selector.is_empty() {
            path = format!("{path}?fieldSelector={}", encode_query(field_selector));
        }
        let v = self.call::<K>(http::Method::GET, &path, None, format!("{namespace}/*"))?;
        let rv = v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        let items = v["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(decode)
            .collect::<Result<Vec<K>, _>>()?;
        Ok((items, rv))
    }

    /// Watch `K` in `namespace` ("" = all) matching `field_selector`, from `resource_version`,
    /// for at most `timeout_secs`. Calls `on_event` for each event until it returns false or
    /// the server ends the stream (timeout); blocks meanwhile.
    pub fn watch_in<K: Object>(
        &self,
        namespace: &str,
        field_selector: &str,
        resource_version: &str,
        timeout_secs: u64,
        mut on_event: impl FnMut(WatchEvent<K>) -> bool,
    ) -> Result<(), ClusterError> {
        self.watch_inner(
            namespace,
            field_selector,
            resource_version,
            timeout_secs,
            None,
            &mut on_event,
        )
        .map_err(|(_, e)| e)
    }

    /// [`Self::watch_in`] that also ends when `stop` changes; errors carry the HTTP status
    /// when the server refused the watch.
    fn watch_inner<K: Object>(
        &self,
        namespace: &str,
        field_selector: &str,
        resource_version: &str,
        timeout_secs: u64,
        stop: Option<tokio::sync::watch::Receiver<bool>>,
        on_event: &mut dyn FnMut(WatchEvent<K>) -> bool,
    ) -> Result<(), (Option<u16>, ClusterError)> {
        let mut path = format!(
            "{}?watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={timeout_secs}",
            collection::<K>(namespace),
            encode_query(resource_version)
        );
        if !field_selector.is_empty() {
            path = format!("{path}&fieldSelector={}", encode_query(field_selector));
        }
        self.watch_raw(
            &path,
            K::KIND,
            &format!("{namespace}/*"),
            "application/json",
            stop,
            &mut |ev| Ok(on_event(ev.try_map(decode::<K>)?)),
        )
    }

    /// One watch request of `path`, its events as JSON objects, until `on_event` returns
    /// false (or fails), `stop` changes or the stream ends.
    fn watch_raw(
        &self,
        path: &str,
        kind: &str,
        key: &str,
        accept: &str,
        stop: Option<tokio::sync::watch::Receiver<bool>>,
        on_event: &mut dyn FnMut(WatchEvent<Value>) -> Result<bool, ClusterError>,
    ) -> Result<(), (Option<u16>, ClusterError)> {
        self.counters.watches.fetch_add(1, Ordering::Relaxed);
        let mut stop = stop;
        self.rt.block_on(async {
            let (resp, sender, conn) = self
                .send(http::Method::GET, path, None, accept)
                .await
                .map_err(|e| (None, e))?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            if !(200..300).contains(&status) {
                let bytes = body.collect().await.map_err(|e| (None, api(e)))?.to_bytes();
                conn.abort();
                return Err((
                    Some(status),
                    error_of(kind, status, &bytes, key.to_string()),
                ));
            }
            let mut buf: Vec<u8> = Vec::new();
            let result = 'read: loop {
                let next = async {
                    match stop.as_mut() {
                        Some(rx) if !*rx.borrow() => {
                            tokio::select! {
                                f = body.frame() => Some(f),
                                _ = rx.changed() => None,
                            }
                        }
                        Some(_) => None,
                        None => Some(body.frame().await),
                    }
                };
                let Some(frame) = next.await else {
                    break 'read Ok(());
                };
                let frame = match frame {
                    None => break 'read Ok(()),
                    Some(Err(e)) => break 'read Err(api(format!("watch {kind}: {e}"))),
                    Some(Ok(f)) => f,
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let v: Value = match serde_json::from_slice(&line) {
                        Ok(v) => v,
                        Err(e) => break 'read Err(api(format!("watch {kind}: bad event: {e}"))),
                    };
                    let obj = v["object"].clone();
                    let ev = match v["type"].as_str().unwrap_or("") {
                        "ADDED" => WatchEvent::Added(obj),
                        "MODIFIED" => WatchEvent::Modified(obj),
                        "DELETED" => WatchEvent::Deleted(obj),
                        "BOOKMARK" => WatchEvent::Bookmark(
                            obj["metadata"]["resourceVersion"]
                                .as_str()
                                .unwrap_or("")
                                .to_string(),
                        ),
                        _ => WatchEvent::Error(match obj["code"].as_u64() {
                            Some(code) => format!(
                                "{code} {}",
                                obj["message"].as_str().unwrap_or("watch error")
                            ),
                            None => obj["message"].as_str().unwrap_or("watch error").to_string(),
                        }),
                    };
                    match on_event(ev) {
                        Ok(true) => {}
                        Ok(false) => break 'read Ok(()),
                        Err(e) => break 'read Err(e),
                    }
                }
            };
            drop(body);
            drop(sender);
            conn.abort();
            result.map_err(|e| (None, e))
        })
    }

    fn call<K: Resource>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
        key: String,
    ) -> Result<Value, ClusterError> {
        self.call_raw(
            method,
            path,
            body,
            K::KIND,
            Some(K::GROUP.is_empty()),
            key,
            "application/json",
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn call_raw(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
        kind: &str,
        // The resource's group is the core group; None: `path` is no resource (discovery).
        core: Option<bool>,
        key: String,
        accept: &str,
    ) -> Result<Value, ClusterError> {
        let c = &self.counters;
        let counter = if method != http::Method::GET {
            &c.writes
        } else if core.is_some_and(|core| is_list_path(path, core)) {
            &c.lists
        } else {
            &c.gets
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let (code, bytes) = self.request(method, path, body, accept)?;
        if !(200..300).contains(&code) {
            return Err(error_of(kind, code, &bytes, key));
        }
        serde_json::from_slice(&bytes).map_err(|e| api(format!("{kind} {key}: response: {e}")))
    }

    /// GET a discovery document.
    fn discovery_doc(&self, path: &str) -> Result<Value, ClusterError> {
        self.call_raw(
            http::Method::GET,
            path,
            None,
            "APIResourceList",
            None,
            path.to_string(),
            "application/json",
        )
    }

    fn path_of<K: Object>(obj: &K) -> (String, String) {
        let m = obj.metadata();
        let ns = m.namespace.clone().unwrap_or_default();
        let name = m.name.clone().unwrap_or_default();
        (
            format!("{}/{}", collection::<K>(&ns), name),
            format!("{ns}/{name}"),
        )
    }
}

fn policy_name(p: Propagation) -> &'static str {
    match p {
        Propagation::Background => "Background",
        Propagation::Foreground => "Foreground",
        Propagation::Orphan => "Orphan",
    }
}

/// How long one watch request may stay open before it is renewed (from the last version).
const WATCH_TIMEOUT_SECS: u64 = 300;

/// Metadata is all the garbage collector needs: a Kubernetes API server then sends
/// PartialObjectMetadata (ours sends whole objects, read the same way).
const ACCEPT_META_LIST: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
const ACCEPT_META: &str =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

/// The resources of one APIResourceList that can be listed, watched and deleted.
fn resources_of(doc: &Value, group: &str, version: &str) -> Vec<ApiResource> {
    let mut out = Vec::new();
    for r in doc["resources"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or("");
        let verbs: Vec<&str> = r["verbs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if name.is_empty()
            || name.contains('/')
            || !["list", "watch", "delete"]
                .iter()
                .all(|v| verbs.contains(v))
        {
            continue;
        }
        out.push(ApiResource {
            group: group.to_string(),
            version: version.to_string(),
            kind: r["kind"].as_str().unwrap_or("").to_string(),
            plural: name.to_string(),
            namespaced: r["namespaced"].as_bool().unwrap_or(false),
        });
    }
    out
}

impl WatchCluster for HttpCluster {
    fn list_versioned<K: Object>(&self) -> Result<(Vec<K>, String), ClusterError> {
        self.list_in("", "")
    }

    fn discover(&self) -> Result<Vec<ApiResource>, ClusterError> {
        let mut out = resources_of(&self.discovery_doc("/api/v1")?, "", "v1");
        let groups = self.discovery_doc("/apis")?;
        for g in groups["groups"].as_array().into_iter().flatten() {
            let name = g["name"].as_str().unwrap_or("");
            let Some(gv) = g["preferredVersion"]["groupVersion"].as_str() else {
                continue;
            };
            let version = gv.rsplit('/').next().unwrap_or("");
            if name.is_empty() || version.is_empty() {
                continue;
            }
            out.extend(resources_of(
                &self.discovery_doc(&format!("/apis/{gv}"))?,
                name,
                version,
            ));
        }
        Ok(out)
    }

    fn list_meta(&self, r: &ApiResource) -> Result<(Vec<MetaObject>, String), ClusterError> {
        let v = self.call_raw(
            http::Method::GET,
            &r.collection_path(""),
            None,
            &r.kind,
            Some(r.group.is_empty()),
            "*".into(),
            ACCEPT_META_LIST,
        )?;
        let rv = v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        let items = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| MetaObject::from_json(r, o))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((items, rv))
    }

    fn watch_meta(
        &self,
        r: &ApiResource,
        resource_version: &str,
        stop: &StopSignal,
        on_event: &mut dyn FnMut(WatchEvent<MetaObject>) -> bool,
    ) -> Result<(), ClusterError> {
        let path = format!(
            "{}?watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={WATCH_TIMEOUT_SECS}",
            r.collection_path(""),
            encode_query(resource_version)
        );
        match self.watch_raw(
            &path,
            &r.kind,
            "*",
            ACCEPT_META,
            Some(stop.subscribe()),
            &mut |ev| Ok(on_event(ev.try_map(|o| MetaObject::from_json(r, &o))?)),
        ) {
            Ok(()) => Ok(()),
            Err((Some(410), e)) => {
                on_event(WatchEvent::Error(format!("410 {e}")));
                Ok(())
            }
            Err((_, e)) => Err(e),
        }
    }

    fn watch<K: Object>(
        &self,
        resource_version: &str,
        stop: &StopSignal,
        on_event: &mut dyn FnMut(WatchEvent<K>) -> bool,
    ) -> Result<(), ClusterError> {
        match self.watch_inner(
            "",
            "",
            resource_version,
            WATCH_TIMEOUT_SECS,
            Some(stop.subscribe()),
            on_event,
        ) {
            Ok(()) => Ok(()),
            Err((Some(410), e)) => {
                on_event(WatchEvent::Error(format!("410 {e}")));
                Ok(())
            }
            Err((_, e)) => Err(e),
        }
    }
}

impl Cluster for HttpCluster {
    fn list<K: Object>(&self) -> Result<Vec<K>, ClusterError> {
        let v = self.call::<K>(http::Method::GET, &collection::<K>(""), None, "*".into())?;
        v["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(decode)
            .collect()
    }

    fn get<K: Object>(&self, namespace: &str, name: &str) -> Result<Option<K>, ClusterError> {
        match self.call::<K>(
            http::Method::GET,
            &format!("{}/{name}", collection::<K>(namespace)),
            None,
            format!("{namespace}/{name}"),
        ) {
            Ok(v) => decode(v).map(Some),
            Err(ClusterError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create<K: Object>(&self, obj: &K) -> Result<K, ClusterError> {
        let ns = obj.metadata().namespace.clone().unwrap_or_default();
        let key = format!(
            "{ns}/{}",
            obj.metadata()
                .name
                .as_deref()
                .or(obj.metadata().generate_name.as_deref())
                .unwrap_or("")
        );
        let body = serde_json::to_value(obj).map_err(api)?;
        decode(self.call::<K>(http::Method::POST, &collection::<K>(&ns), Some(body), key)?)
    }

    fn update<K: Object>(&self, obj: &K) -> Result<K, ClusterError> {
        let (path, key) = Self::path_of(obj);
        decode(self.call::<K>(
            http::Method::PUT,
            &path,
            Some(serde_json::to_value(obj).map_err(api)?),
            key,
        )?)
    }

    fn update_status<K: Object>(&self, obj: &K) -> Result<K, ClusterError> {
        let (path, key) = Self::path_of(obj);
        decode(self.call::<K>(
            http::Method::PUT,
            &format!("{path}/status"),
            Some(serde_json::to_value(obj).map_err(api)?),
            key,
        )?)
    }

    fn delete<K: Object>(
        &self,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> Result<(), ClusterError> {
        let body = json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": policy_name(propagation)});
        self.call::<K>(
            http::Method::DELETE,
            &format!("{}/{name}", collection::<K>(namespace)),
            Some(body),
            format!("{namespace}/{name}"),
        )
        .map(|_| ())
    }

    fn force_delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        let body = json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0});
        self.call::<Pod>(
            http::Method::DELETE,
            &format!("{}/{name}", collection::<Pod>(namespace)),
            Some(body),
            format!("{namespace}/{name}"),
        )
        .map(|_| ())
    }

    fn delete_dynamic(
        &self,
        r: &ApiResource,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> Result<(), ClusterError> {
        let body = json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": policy_name(propagation)});
        self.call_raw(
            http::Method::DELETE,
            &format!("{}/{name}", r.collection_path(namespace)),
            Some(body),
            &r.kind,
            Some(r.group.is_empty()),
            format!("{namespace}/{name}"),
            "application/json",
        )
        .map(|_| ())
    }

    fn get_meta_dynamic(
        &self,
        r: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>, ClusterError>
    {
        let ns = if r.namespaced { namespace } else { "" };
        match self.call_raw(
            http::Method::GET,
            &format!("{}/{name}", r.collection_path(ns)),
            None,
            &r.kind,
            Some(r.group.is_empty()),
            format!("{ns}/{name}"),
            ACCEPT_META,
        ) {
            Ok(v) => MetaObject::from_json(r, &v).map(|m| Some(m.metadata)),
            Err(ClusterError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn update_meta_dynamic(
        &self,
        r: &ApiResource,
        namespace: &str,
        name: &str,
        f: &dyn Fn(&mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta),
    ) -> Result<Option<Value>, ClusterError> {
        let path = format!("{}/{name}", r.collection_path(namespace));
        let key = format!("{namespace}/{name}");
        let call = |method, body| {
            self.call_raw(
                method,
                &path,
                body,
                &r.kind,
                Some(r.group.is_empty()),
                key.clone(),
                "application/json",
            )
        };
        let mut v = match call(http::Method::GET, None) {
            Ok(v) => v,
            Err(ClusterError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
            serde_json::from_value(v["metadata"].clone())
                .map_err(|e| api(format!("decode {} {key} metadata: {e}", r.kind)))?;
        f(&mut meta);
        meta.resource_version = None;
        v["metadata"] = serde_json::to_value(&meta).map_err(api)?;
        match call(http::Method::PUT, Some(v)) {
            Ok(mut v) => {
                // Items and replies may come without them.
                v["apiVersion"] = json!(r.api_version());
                v["kind"] = json!(r.kind);
                Ok(Some(v))
            }
            Err(ClusterError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn bind_pod(&self, namespace: &str, name: &str, node: &str) -> Result<(), ClusterError> {
        let body = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        self.call::<Pod>(
            http::Method::POST,
            &format!("{}/{name}/binding", collection::<Pod>(namespace)),
            Some(body),
            format!("{namespace}/{name}"),
        )
        .map(|_| ())
    }
}
