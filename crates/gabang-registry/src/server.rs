//! The HTTP side of the registry: routing of `/v2/…` (repository names contain slashes, so
//! paths are parsed from the end), auth checks, and one handler per endpoint of the OCI
//! Distribution spec v1.1. Start at [`router`] and [`serve`].

use crate::auth::{parse_basic, Grant};
use crate::error::{ApiError, Code, Error, Result};
use crate::manifest::{self, is_index_type, OCI_INDEX};
use crate::name::{valid_name, valid_tag};
use crate::registry::{AuthMode, Registry, UploadState};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use gabang_content::digest::Algorithm;
use gabang_content::Digest;
use std::future::Future;
use std::io::{Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

#[derive(Clone)]
struct Ctx {
    reg: Arc<Registry>,
    tls: bool,
}

type ApiResult = std::result::Result<Response, ApiError>;

/// The registry's routes: `/v2/`, `/v2/<name>/…`, `/v2/_catalog`, and `/token`.
pub fn router(reg: Arc<Registry>, tls: bool) -> Router {
    Router::new()
        .route("/token", axum::routing::get(token))
        .fallback(dispatch)
        .with_state(Ctx { reg, tls })
        .layer(axum::middleware::map_response(
            |mut r: Response| async move {
                r.headers_mut().insert(
                    "docker-distribution-api-version",
                    HeaderValue::from_static("registry/2.0"),
                );
                r
            },
        ))
}

/// Load a PEM certificate chain and private key for rustls.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| Error::Tls(format!("read {}: {e}", p.display())));
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?
        .ok_or_else(|| Error::Tls(format!("{}: no private key found", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| Error::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serve until `shutdown` resolves. HTTPS when `tls` is given.
pub async fn serve(
    reg: Arc<Registry>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let app = router(reg, tls.is_some());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!("accept: {e}"); continue; }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let http = hyper::server::conn::http1::Builder::new();
            let res = match acceptor {
                Some(acc) => match acc.accept(tcp).await {
                    Ok(s) => {
                        http.serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!("TLS handshake with {peer}: {e}");
                        return;
                    }
                },
                None => {
                    http.serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await
                }
            };
            if let Err(e) = res {
                tracing::debug!("connection {peer}: {e}");
            }
        });
    }
}

/// A server on its own runtime thread (for the CLI's tests and benchmarks); stops on drop.
pub struct BackgroundServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    pub fn start(
        reg: Arc<Registry>,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<BackgroundServer> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("tokio runtime: {e}")))?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| Error::Config(format!("bind {addr}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("local addr: {e}")))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = rt.block_on(serve(reg, listener, tls, async {
                let _ = rx.await;
            }));
        });
        Ok(BackgroundServer {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- routing

enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    UploadStart(String),
    Upload(String, String),
    Referrers(String, String),
}

impl Route {
    fn name(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::UploadStart(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }
}

fn parse_route(path: &str) -> Option<Route> {
    let rest = match path {
        "/v2" | "/v2/" => return Some(Route::Base),
        p => p.strip_prefix("/v2/")?,
    };
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    let s = |x: &str| x.to_string();
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(s(n)));
    }
    if let Some(n) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart(s(n)));
    }
    if let Some((n, id)) = rest.rsplit_once("/blobs/uploads/") {
        return Some(Route::Upload(s(n), s(id)));
    }
    if let Some((n, r)) = rest.rsplit_once("/manifests/") {
        return Some(Route::Manifest(s(n), s(r)));
    }
    if let Some((n, d)) = rest.rsplit_once("/blobs/") {
        return Some(Route::Blob(s(n), s(d)));
    }
    if let Some((n, d)) = rest.rsplit_once("/referrers/") {
        return Some(Route::Referrers(s(n), s(d)));
    }
    None
}

fn query(uri: &axum::http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn q<'a>(qs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    qs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

async fn dispatch(State(ctx): State<Ctx>, req: Request) -> Response {
    match handle(ctx, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(ctx: Ctx, req: Request) -> ApiResult {
    let (parts, body) = req.into_parts();
    let route = parse_route(parts.uri.path())
        .ok_or_else(|| ApiError::new(Code::NameUnknown, "no such endpoint"))?;
    let method = parts.method.clone();
    let headers = &parts.headers;
    let qs = query(&parts.uri);
    if let Some(n) = route.name() {
        if !valid_name(n) {
            return Err(ApiError::new(
                Code::NameInvalid,
                format!("invalid repository name {n:?}"),
            ));
        }
    }
    let action = match method {
        Method::GET | Method::HEAD => "pull",
        Method::DELETE => "delete",
        _ => "push",
    };
    let grant = match &route {
        Route::Base => authorize(&ctx, headers, None, action)?,
        Route::Catalog => authorize(&ctx, headers, Some("registry:catalog"), "*")?,
        r => {
            let res = format!("repository:{}", r.name().unwrap_or_default());
            authorize(&ctx, headers, Some(&res), action)?
        }
    };
    let reg = &ctx.reg;
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => {
            Ok(axum::Json(serde_json::json!({})).into_response())
        }
        (Route::Catalog, Method::GET) => catalog(reg, &qs),
        (Route::Tags(n), Method::GET) => tags_list(reg, &n, &qs),
        (Route::Manifest(n, r), Method::GET) => manifest_get(reg, &n, &r, headers, false),
        (Route::Manifest(n, r), Method::HEAD) => manifest_get(reg, &n, &r, headers, true),
        (Route::Manifest(n, r), Method::PUT) => manifest_put(reg, &n, &r, headers, body).await,
        (Route::Manifest(n, r), Method::DELETE) => manifest_delete(reg, &n, &r),
        (Route::Blob(n, d), Method::GET) => blob_get(reg, &n, &d, headers, false).await,
        (Route::Blob(n, d), Method::HEAD) => blob_get(reg, &n, &d, headers, true).await,
        (Route::Blob(n, d), Method::DELETE) => blob_delete(reg, &n, &d).await,
        (Route::UploadStart(n), Method::POST) => {
            upload_start(reg, &n, &qs, grant.as_ref(), headers, body).await
        }
        (Route::Upload(n, id), Method::GET) => upload_status(reg, &n, &id),
        (Route::Upload(n, id), Method::PATCH) => upload_patch(reg, &n, &id, headers, body).await,
        (Route::Upload(n, id), Method::PUT) => upload_put(reg, &n, &id, &qs, headers, body).await,
        (Route::Upload(n, id), Method::DELETE) => upload_cancel(reg, &n, &id),
        (Route::Referrers(n, d), Method::GET) => referrers(reg, &n, &d, &qs),
        _ => Err(ApiError::new(Code::Unsupported, "method not allowed here")
            .status(StatusCode::METHOD_NOT_ALLOWED)),
    }
}

// ---------------------------------------------------------------- auth

fn authorize(
    ctx: &Ctx,
    headers: &HeaderMap,
    resource: Option<&str>,
    action: &str,
) -> std::result::Result<Option<Grant>, ApiError> {
    let authz = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let basic_ok =
        |h: &crate::auth::Htpasswd| parse_basic(authz).is_some_and(|(u, p)| h.verify(&u, &p));
    match &ctx.reg.config.auth {
        AuthMode::None => Ok(None),
        AuthMode::Basic(h) => {
            if basic_ok(h) {
                Ok(None)
            } else {
                Err(ApiError::new(Code::Unauthorized, "authentication required")
                    .header("WWW-Authenticate", "Basic realm=\"gabang-registry\""))
            }
        }
        AuthMode::Token(h) => {
            let now = ctx.reg.now();
            if let Some(t) = authz
                .strip_prefix("Bearer ")
                .and_then(|t| ctx.reg.tokens.get(t.trim(), now))
            {
                if resource.is_none_or(|r| t.allows(r, action)) {
                    return Ok(Some(t));
                }
            } else if basic_ok(h) {
                return Ok(None);
            }
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("localhost");
            let scheme = if ctx.tls { "https" } else { "http" };
            let mut challenge =
                format!("Bearer realm=\"{scheme}://{host}/token\",service=\"gabang-registry\"");
            if let Some(r) = resource {
                let acts = match action {
                    "push" => "pull,push",
                    a => a,
                };
                challenge.push_str(&format!(",scope=\"{r}:{acts}\""));
            }
            let code = if authz.starts_with("Bearer ") && resource.is_some() {
                Code::Denied
            } else {
                Code::Unauthorized
            };
            Err(ApiError::new(code, "authentication required")
                .status(StatusCode::UNAUTHORIZED)
                .header("WWW-Authenticate", challenge))
        }
    }
}

async fn token(State(ctx): State<Ctx>, req: Request) -> Response {
    let h = match &ctx.reg.config.auth {
        AuthMode::Token(h) | AuthMode::Basic(h) => h.clone(),
        AuthMode::None => {
            return ApiError::new(Code::Unsupported, "this registry does not use tokens")
                .status(StatusCode::NOT_FOUND)
                .into_response()
        }
    };
    let authz = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some((user, pass)) = parse_basic(authz).filter(|(u, p)| h.verify(u, p)) else {
        return ApiError::new(Code::Unauthorized, "invalid username or password")
            .header("WWW-Authenticate", "Basic realm=\"gabang-registry\"")
            .into_response();
    };
    let _ = pass;
    let qs = query(req.uri());
    let scopes: Vec<String> = qs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let now = ctx.reg.now();
    let ttl_s = 300;
    let token = ctx.reg.tokens.issue(
        Grant {
            user,
            expires_ms: now + ttl_s * 1000,
            scopes,
        },
        now,
    );
    axum::Json(serde_json::json!({
        "token": token, "access_token": token, "expires_in": ttl_s
    }))
    .into_response()
}

// ---------------------------------------------------------------- helpers

fn parse_digest(s: &str) -> std::result::Result<Digest, ApiError> {
    s.parse::<Digest>()
        .map_err(|_| ApiError::new(Code::DigestInvalid, format!("invalid digest {s:?}")))
}

fn resp(status: StatusCode, headers: &[(&str, String)]) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

fn blocking<T>(
    f: impl FnOnce() -> std::result::Result<T, ApiError>,
) -> std::result::Result<T, ApiError> {
    tokio::task::block_in_place(f)
}

// ---------------------------------------------------------------- catalog & tags

fn page_size(reg: &Registry, qs: &[(String, String)]) -> std::result::Result<usize, ApiError> {
    match q(qs, "n") {
        None => Ok(reg.config.max_page),
        Some(n) => n
            .parse::<usize>()
            .map(|n| n.min(reg.config.max_page))
            .map_err(|_| ApiError::new(Code::PaginationNumberInvalid, format!("invalid n {n:?}"))),
    }
}

fn catalog(reg: &Registry, qs: &[(String, String)]) -> ApiResult {
    let n = page_size(reg, qs)?;
    let last = q(qs, "last");
    let mut repos = reg.meta()?.catalog(n + 1, last).map_err(ApiError::from)?;
    let more = repos.len() > n;
    repos.truncate(n);
    let mut r = axum::Json(serde_json::json!({ "repositories": repos })).into_response();
    if more {
        if let Some(l) = repos.last() {
            let link = format!("</v2/_catalog?n={n}&last={l}>; rel=\"next\"");
            if let Ok(v) = HeaderValue::from_str(&link) {
                r.headers_mut().insert(header::LINK, v);
            }
        }
    }
    Ok(r)
}

fn tags_list(reg: &Registry, name: &str, qs: &[(String, String)]) -> ApiResult {
    let n = page_size(reg, qs)?;
    let last = q(qs, "last");
    let meta = reg.meta()?;
    if !meta.repo_exists(name).map_err(ApiError::from)? {
        return Err(ApiError::new(
            Code::NameUnknown,
            format!("repository {name} not known"),
        ));
    }
    let mut tags = meta.tags(name, n + 1, last).map_err(ApiError::from)?;
    drop(meta);
    let more = tags.len() > n;
    tags.truncate(n);
    let mut r = axum::Json(serde_json::json!({ "name": name, "tags": tags })).into_response();
    if more {
        if let Some(l) = tags.last() {
            let link = format!("</v2/{name}/tags/list?n={n}&last={l}>; rel=\"next\"");
            if let Ok(v) = HeaderValue::from_str(&link) {
                r.headers_mut().insert(header::LINK, v);
            }
        }
    }
    Ok(r)
}

// ---------------------------------------------------------------- manifests

/// Resolve a tag or digest to a manifest digest in `name`.
fn resolve(reg: &Registry, name: &str, reference: &str) -> std::result::Result<String, ApiError> {
    if reference.contains(':') {
        return Ok(parse_digest(reference)?.to_string());
    }
    if !valid_tag(reference) {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            format!("invalid tag {reference:?}"),
        ));
    }
    let meta = reg.meta()?;
    match meta.resolve_tag(name, reference).map_err(ApiError::from)? {
        Some(d) => Ok(d),
        None if !meta.repo_exists(name).map_err(ApiError::from)? => Err(ApiError::new(
            Code::NameUnknown,
            format!("repository {name} not known"),
        )),
        None => Err(ApiError::new(
            Code::ManifestUnknown,
            format!("manifest {name}:{reference} unknown"),
        )),
    }
}

fn accepts(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn manifest_get(
    reg: &Registry,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult {
    let digest = resolve(reg, name, reference)?;
    let unknown = || {
        ApiError::new(
            Code::ManifestUnknown,
            format!("manifest {name}@{digest} unknown"),
        )
    };
    let mut row = reg
        .meta()?
        .manifest(name, &digest)
        .map_err(ApiError::from)?
        .ok_or_else(unknown)?;
    let accept = accepts(headers);
    let ok = |mt: &str| {
        accept.is_empty()
            || accept
                .iter()
                .any(|a| a == mt || a == "*/*" || a == "application/*")
    };
    let mut bytes = blocking(|| Ok(reg.store.blobs().read(&parse_digest(&row.digest)?)?))?;
    if !ok(&row.media_type) {
        // An index the client cannot read: serve its linux/amd64 manifest if that is acceptable.
        let child = if is_index_type(&row.media_type) {
            manifest::parse(&bytes, Some(&row.media_type))
                .ok()
                .and_then(|p| manifest::pick_platform(&p.children).cloned())
                .filter(|c| ok(&c.media_type))
        } else {
            None
        };
        let Some(child) = child else {
            return Err(ApiError::new(
                Code::ManifestUnknown,
                format!(
                    "manifest is {}, which the Accept header does not allow",
                    row.media_type
                ),
            ));
        };
        row = reg
            .meta()?
            .manifest(name, &child.digest)
            .map_err(ApiError::from)?
            .ok_or_else(unknown)?;
        bytes = blocking(|| Ok(reg.store.blobs().read(&parse_digest(&row.digest)?)?))?;
    }
    let mut r = resp(
        StatusCode::OK,
        &[
            ("Content-Type", row.media_type.clone()),
            ("Docker-Content-Digest", row.digest.clone()),
            ("ETag", format!("\"{}\"", row.digest)),
            ("Content-Length", bytes.len().to_string()),
        ],
    );
    if !head {
        *r.body_mut() = Body::from(bytes);
    }
    Ok(r)
}

async fn manifest_put(
    reg: &Registry,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let limit = reg.config.max_manifest_bytes;
    let too_big = || {
        ApiError::new(
            Code::SizeInvalid,
            format!("manifest larger than the limit of {limit} bytes"),
        )
        .status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        // Read (and drop) a bounded amount of the body first, so a client still sending
        // gets the 413 instead of a broken pipe; anything larger is cut off.
        if declared.is_some_and(|n| n <= limit.saturating_mul(16)) {
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                if chunk.is_err() {
                    break;
                }
            }
        }
        return Err(too_big());
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_big())?;
    let by_digest = if reference.contains(':') {
        Some(parse_digest(reference)?)
    } else if valid_tag(reference) {
        None
    } else {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            format!("invalid tag {reference:?}"),
        ));
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed =
        manifest::parse(&bytes, ct).map_err(|m| ApiError::new(Code::ManifestInvalid, m))?;
    let algo = by_digest
        .as_ref()
        .map(|d| d.algorithm())
        .unwrap_or(Algorithm::Sha256);
    let digest = Digest::of(algo, &bytes);
    if let Some(d) = &by_digest {
        if *d != digest {
            return Err(ApiError::new(
                Code::DigestInvalid,
                format!("manifest digest is {digest}, not {d}"),
            ));
        }
    }
    let tag = if by_digest.is_none() {
        Some(reference)
    } else {
        None
    };
    let ds = digest.to_string();
    let _guard = reg.commit_lock.read().await;
    blocking(|| {
        let _lease = reg.store.lease()?;
        reg.store.blobs().put_expected(&bytes, &digest)?;
        let res = reg
            .meta()?
            .put_manifest(name, &ds, bytes.len() as u64, &parsed, tag, reg.now());
        match res {
            Ok(()) => {}
            Err(crate::meta::PutManifestError::Missing(m)) => {
                return Err(ApiError::new(
                    Code::ManifestBlobUnknown,
                    format!("blobs not in repository {name}: {}", m.join(", ")),
                ))
            }
            Err(crate::meta::PutManifestError::Db(e)) => return Err(ApiError::internal(e)),
        }
        reg.store
            .add_blob_refs(&crate::registry::owner(name), std::slice::from_ref(&digest))?;
        Ok(())
    })?;
    let mut h = vec![
        ("Location", format!("/v2/{name}/manifests/{ds}")),
        ("Docker-Content-Digest", ds.clone()),
    ];
    if let Some(s) = &parsed.subject {
        h.push(("OCI-Subject", s.to_string()));
    }
    Ok(resp(StatusCode::CREATED, &h))
}

fn manifest_delete(reg: &Registry, name: &str, reference: &str) -> ApiResult {
    let mut meta = reg.meta()?;
    let found = if reference.contains(':') {
        let d = parse_digest(reference)?;
        meta.delete_manifest(name, &d.to_string())
            .map_err(ApiError::from)?
    } else {
        meta.delete_tag(name, reference).map_err(ApiError::from)?
    };
    if !found {
        return Err(ApiError::new(
            Code::ManifestUnknown,
            format!("manifest {name}:{reference} unknown"),
        ));
    }
    Ok(resp(StatusCode::ACCEPTED, &[]))
}

fn referrers(reg: &Registry, name: &str, digest: &str, qs: &[(String, String)]) -> ApiResult {
    let d = parse_digest(digest)?;
    let filter = q(qs, "artifactType");
    let rows = reg
        .meta()?
        .referrers(name, &d.to_string())
        .map_err(ApiError::from)?;
    let manifests: Vec<serde_json::Value> = rows
        .into_iter()
        .filter(|r| filter.is_none_or(|f| r.artifact_type.as_deref() == Some(f)))
        .map(|r| {
            let mut v = serde_json::json!({
                "mediaType": r.media_type, "digest": r.digest, "size": r.size,
            });
            if let Some(a) = r.artifact_type {
                v["artifactType"] = a.into();
            }
            if let Some(a) = r
                .annotations
                .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
            {
                v["annotations"] = a;
            }
            v
        })
        .collect();
    let body =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut r = resp(StatusCode::OK, &[("Content-Type", OCI_INDEX.to_string())]);
    if filter.is_some() {
        r.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    *r.body_mut() = Body::from(body.to_string());
    Ok(r)
}

// ---------------------------------------------------------------- blobs

/// `bytes=a-b` / `bytes=a-` / `bytes=-n` → (start, end inclusive), or None when unsatisfiable.
fn parse_range(v: &str, size: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (size.saturating_sub(n), size.checked_sub(1)?)
    } else {
        let s: u64 = a.parse().ok()?;
        let e = if b.is_empty() {
            size.checked_sub(1)?
        } else {
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?)
        };
        (s, e)
    };
    (start <= end && start < size).then_some((start, end))
}

async fn blob_get(
    reg: &Registry,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult {
    let d = parse_digest(digest)?;
    let unknown = || ApiError::new(Code::BlobUnknown, format!("blob {d} unknown to {name}"));
    let linked = reg
        .meta()?
        .blob_linked(name, &d.to_string(), reg.now())
        .map_err(ApiError::from)?;
    if linked.is_none() {
        return Err(unknown());
    }
    let file = match reg.store.blobs().open_blob(&d) {
        Ok(f) => f,
        Err(gabang_content::Error::BlobNotFound(_)) => return Err(unknown()),
        Err(e) => return Err(e.into()),
    };
    let size = file.metadata()?.len();
    let mut h = vec![
        ("Docker-Content-Digest", d.to_string()),
        ("ETag", format!("\"{d}\"")),
        ("Accept-Ranges", "bytes".to_string()),
        ("Content-Type", "application/octet-stream".to_string()),
    ];
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some(r) => match parse_range(r, size) {
            Some((s, e)) => {
                h.push(("Content-Range", format!("bytes {s}-{e}/{size}")));
                (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
            }
            None => {
                return Err(ApiError::new(
                    Code::RangeInvalid,
                    format!("range {r:?} not satisfiable for {size} bytes"),
                )
                .header("Content-Range", format!("bytes */{size}")))
            }
        },
    };
    h.push(("Content-Length", len.to_string()));
    let mut r = resp(status, &h);
    if !head {
        let mut file = file;
        if start > 0 {
            file.seek(SeekFrom::Start(start))?;
        }
        let reader = tokio::fs::File::from_std(file).take(len);
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10);
        *r.body_mut() = Body::from_stream(stream);
    }
    Ok(r)
}

async fn blob_delete(reg: &Registry, name: &str, digest: &str) -> ApiResult {
    let d = parse_digest(digest)?;
    let _guard = reg.commit_lock.write().await;
    let found = reg
        .meta()?
        .unlink_blob(name, &d.to_string())
        .map_err(ApiError::from)?;
    if !found {
        return Err(ApiError::new(
            Code::BlobUnknown,
            format!("blob {d} unknown to {name}"),
        ));
    }
    blocking(|| {
        Ok(reg.store.remove_blob_refs(
            &crate::registry::owner(name),
            Some(std::slice::from_ref(&d)),
        )?)
    })?;
    Ok(resp(StatusCode::ACCEPTED, &[]))
}

// ---------------------------------------------------------------- uploads

fn upload_headers(name: &str, id: &str, offset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("Location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("Range", format!("0-{}", offset.saturating_sub(1))),
        ("Docker-Upload-UUID", id.to_string()),
        ("Content-Length", "0".to_string()),
    ]
}

async fn upload_start(
    reg: &Registry,
    name: &str,
    qs: &[(String, String)],
    grant: Option<&Grant>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    if let Some(m) = q(qs, "mount") {
        let d = parse_digest(m)?;
        let ds = d.to_string();
        let from = q(qs, "from").filter(|f| valid_name(f));
        let may_read = |repo: &str| match &reg.config.auth {
            AuthMode::Token(_) => {
                grant.is_some_and(|g| g.allows(&format!("repository:{repo}"), "pull"))
            }
            _ => true,
        };
        let size = {
            let meta = reg.meta()?;
            match from {
                Some(f) if may_read(f) => meta
                    .blob_linked(f, &ds, reg.now())
                    .map_err(ApiError::from)?,
                // OCI 1.1: a registry may mount without `from` when it finds the blob itself.
                None if matches!(reg.config.auth, AuthMode::None)
                    && meta.linked_anywhere(&ds).map_err(ApiError::from)? =>
                {
                    reg.store.blobs().info(&d).ok().map(|i| i.size)
                }
                _ => None,
            }
        };
        if let Some(size) = size.filter(|_| reg.store.blobs().exists(&d)) {
            let _guard = reg.commit_lock.read().await;
            blocking(|| reg.link(name, &d, size))?;
            return Ok(resp(
                StatusCode::CREATED,
                &[
                    ("Location", format!("/v2/{name}/blobs/{ds}")),
                    ("Docker-Content-Digest", ds.clone()),
                    ("Content-Length", "0".to_string()),
                ],
            ));
        }
    }
    let monolithic = q(qs, "digest").map(parse_digest).transpose()?;
    let id = blocking(|| reg.new_upload(name))?;
    let Some(expected) = monolithic else {
        return Ok(resp(StatusCode::ACCEPTED, &upload_headers(name, &id, 0)));
    };
    let state = reg
        .upload_state(&id)
        .ok_or_else(|| ApiError::internal("upload state"))?;
    let mut st = state.lock().await;
    let res = async {
        let size = append_body(reg, &id, &mut st, 0, headers, body).await?;
        reg.commit_upload(name, &id, &mut st, size, &expected).await
    }
    .await;
    if res.is_err() {
        reg.drop_upload(&id);
    }
    res?;
    Ok(resp(
        StatusCode::CREATED,
        &[
            ("Location", format!("/v2/{name}/blobs/{expected}")),
            ("Docker-Content-Digest", expected.to_string()),
            ("Content-Length", "0".to_string()),
        ],
    ))
}

fn session(reg: &Registry, name: &str, id: &str) -> std::result::Result<u64, ApiError> {
    let unknown = || ApiError::new(Code::BlobUploadUnknown, format!("upload {id} unknown"));
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    match reg.meta()?.upload(id).map_err(ApiError::from)? {
        Some((repo, offset)) if repo == name => Ok(offset),
        _ => Err(unknown()),
    }
}

fn upload_status(reg: &Registry, name: &str, id: &str) -> ApiResult {
    let offset = session(reg, name, id)?;
    Ok(resp(
        StatusCode::NO_CONTENT,
        &upload_headers(name, id, offset),
    ))
}

fn upload_cancel(reg: &Registry, name: &str, id: &str) -> ApiResult {
    session(reg, name, id)?;
    reg.drop_upload(id);
    Ok(resp(StatusCode::NO_CONTENT, &[]))
}

/// Check `Content-Range: a-b` against the session's offset (416 with the current range).
fn check_content_range(
    name: &str,
    id: &str,
    offset: u64,
    headers: &HeaderMap,
) -> std::result::Result<(), ApiError> {
    let Some(cr) = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let spec = cr
        .trim()
        .trim_start_matches("bytes ")
        .trim_start_matches("bytes=");
    let spec = spec.split('/').next().unwrap_or("");
    let parsed = spec
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bad = |msg: String| {
        let mut e =
            ApiError::new(Code::BlobUploadInvalid, msg).status(StatusCode::RANGE_NOT_SATISFIABLE);
        for (k, v) in upload_headers(name, id, offset) {
            if k != "Content-Length" {
                e = e.header(k, v);
            }
        }
        e
    };
    match parsed {
        Some((a, b)) if a == offset && b >= a && len.is_none_or(|l| l == b - a + 1) => Ok(()),
        Some((a, _)) if a != offset => Err(bad(format!(
            "chunk starts at {a} but the upload has {offset} bytes"
        ))),
        _ => Err(bad(format!("invalid Content-Range {cr:?}"))),
    }
}

async fn upload_patch(
    reg: &Registry,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    session(reg, name, id)?;
    let state = reg
        .upload_state(id)
        .ok_or_else(|| ApiError::internal("upload state"))?;
    let mut st = state.lock().await;
    let offset = session(reg, name, id)?;
    check_content_range(name, id, offset, headers)?;
    let new = append_body(reg, id, &mut st, offset, headers, body).await?;
    Ok(resp(StatusCode::ACCEPTED, &upload_headers(name, id, new)))
}

async fn upload_put(
    reg: &Registry,
    name: &str,
    id: &str,
    qs: &[(String, String)],
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    session(reg, name, id)?;
    let state = reg
        .upload_state(id)
        .ok_or_else(|| ApiError::internal("upload state"))?;
    let mut st = state.lock().await;
    let offset = session(reg, name, id)?;
    let expected = match q(qs, "digest") {
        Some(d) => parse_digest(d)?,
        None => {
            return Err(ApiError::new(
                Code::DigestInvalid,
                "digest parameter required",
            ))
        }
    };
    check_content_range(name, id, offset, headers)?;
    let size = append_body(reg, id, &mut st, offset, headers, body).await?;
    reg.commit_upload(name, id, &mut st, size, &expected)
        .await?;
    Ok(resp(
        StatusCode::CREATED,
        &[
            ("Location", format!("/v2/{name}/blobs/{expected}")),
            ("Docker-Content-Digest", expected.to_string()),
            ("Content-Length", "0".to_string()),
        ],
    ))
}

/// Append a request body to the session's file, hashing as it goes; records the new offset
/// (also when the body breaks off, so the client can resume). Returns the new offset.
async fn append_body(
    reg: &Registry,
    id: &str,
    st: &mut UploadState,
    offset: u64,
    _headers: &HeaderMap,
    body: Body,
) -> std::result::Result<u64, ApiError> {
    let path = reg.upload_path(id);
    let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
    // Drop anything past the recorded offset (a write that broke off before it was recorded).
    file.set_len(offset)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut stream = body.into_data_stream();
    let mut written = offset;
    let mut buf: Vec<u8> = Vec::with_capacity(4 << 20);
    let mut failure = None;
    let flush = |file: &mut std::fs::File,
                 st: &mut UploadState,
                 buf: &mut Vec<u8>,
                 written: &mut u64|
     -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        tokio::task::block_in_place(|| {
            file.write_all(buf)?;
            start_writeback(file, *written, buf.len() as u64);
            if st.hashed == *written {
                st.hasher.update(buf);
                st.hashed += buf.len() as u64;
            }
            *written += buf.len() as u64;
            buf.clear();
            Ok(())
        })
    };
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                buf.extend_from_slice(&c);
                if buf.len() >= 4 << 20 {
                    flush(&mut file, st, &mut buf, &mut written)?;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    flush(&mut file, st, &mut buf, &mut written)?;
    reg.meta()?
        .set_upload_offset(id, written)
        .map_err(ApiError::from)?;
    if let Some(e) = failure {
        return Err(ApiError::new(
            Code::BlobUploadInvalid,
            format!("upload body broke off: {e}"),
        ));
    }
    Ok(written)
}

/// Start writing this range to disk now (without waiting), so the fsync when the upload
/// completes finds little left to do. Best effort: errors only mean the fsync does the work.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the fd is open for the call.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_ranges() {
        assert!(matches!(parse_route("/v2/"), Some(Route::Base)));
        assert!(
            matches!(parse_route("/v2/a/b/manifests/latest"), Some(Route::Manifest(n, r)) if n == "a/b" && r == "latest")
        );
        assert!(
            matches!(parse_route("/v2/a/blobs/uploads/"), Some(Route::UploadStart(n)) if n == "a")
        );
        assert!(
            matches!(parse_route("/v2/a/blobs/uploads/x1"), Some(Route::Upload(n, i)) if n == "a" && i == "x1")
        );
        assert!(
            matches!(parse_route("/v2/blobs/blobs/sha256:1"), Some(Route::Blob(n, _)) if n == "blobs")
        );
        assert!(matches!(parse_route("/v2/a/tags/list"), Some(Route::Tags(n)) if n == "a"));
        assert!(parse_route("/v3/x").is_none());
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-2", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
