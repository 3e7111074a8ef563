//! The push/pull client: moves images between the local content store and any OCI
//! Distribution registry (ours, CNCF Distribution, …).
//!
//! [`push`] and [`pull`] are blocking calls that run their own tokio runtime. Blobs move
//! concurrently (one progress bar each); a blob the other side already has is skipped (HEAD,
//! or a cross-repository mount on push); big layers upload in chunks that resume from the
//! server's `Range` after a failure; pulled blobs go through [`BlobWriter`] and are committed
//! only when their digest and size match the manifest. Credentials come from
//! `~/.docker/config.json` (see [`DockerConfig`]); the docker token flow and basic auth are
//! both handled. `localhost`/`127.*`/`::1` and `--insecure` registries use plain HTTP.
//!
//! [`BlobWriter`]: gabang_content::blobs::BlobWriter

use crate::error::{invalid, io_ctx, Error, Result};
use crate::manifest::{self, ALL_MANIFEST_TYPES};
use base64::Engine as _;
use futures_util::StreamExt;
use gabang_content::blobs::BlobStore;
use gabang_content::{Digest, Image, ImageRef, Store};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to talk to registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Plain HTTP even for hosts other than localhost.
    pub insecure: bool,
    /// An extra CA certificate (PEM) to trust.
    pub ca_cert: Option<PathBuf>,
    /// Blobs moved at once.
    pub concurrency: usize,
    /// Layers larger than this upload in chunks of `chunk_size` (resumable).
    pub chunked_threshold: u64,
    pub chunk_size: u64,
    /// Show progress bars (on stderr).
    pub progress: bool,
    /// docker config file; default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// Credentials overriding the docker config.
    pub credentials: Option<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: false,
            ca_cert: None,
            concurrency: 4,
            chunked_threshold: 128 << 20,
            chunk_size: 64 << 20,
            progress: false,
            docker_config: None,
            credentials: None,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    pub manifest_digest: String,
    pub uploaded: usize,
    pub skipped: usize,
    pub mounted: usize,
    pub bytes_uploaded: u64,
}

/// What a pull did.
#[derive(Debug, Clone, Default)]
pub struct PullReport {
    pub manifest_digest: String,
    pub downloaded: usize,
    pub present: usize,
    pub bytes_downloaded: u64,
}

// ---------------------------------------------------------------- docker config

/// `~/.docker/config.json`, keeping every field we do not know.
pub struct DockerConfig {
    path: PathBuf,
    value: serde_json::Value,
}

impl DockerConfig {
    pub fn default_path() -> PathBuf {
        if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
            return PathBuf::from(d).join("config.json");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/root".into());
        home.join(".docker").join("config.json")
    }

    pub fn load(path: Option<&Path>) -> Result<DockerConfig> {
        let path = path
            .map(Path::to_path_buf)
            .unwrap_or_else(Self::default_path);
        let value = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| invalid(path.display().to_string(), format!("not valid JSON: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
            Err(e) => {
                return Err(Error::Io {
                    context: format!("read {}", path.display()),
                    source: e,
                })
            }
        };
        Ok(DockerConfig { path, value })
    }

    fn keys(registry: &str) -> Vec<String> {
        let mut k = vec![
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
            format!("https://{registry}/v1/"),
        ];
        if registry == "docker.io" {
            k.push("https://index.docker.io/v1/".into());
        }
        k
    }

    /// (user, password) stored for a registry host.
    pub fn credentials(&self, registry: &str) -> Option<(String, String)> {
        let auths = self.value.get("auths")?.as_object()?;
        Self::keys(registry).iter().find_map(|k| {
            let a = auths.get(k)?.get("auth")?.as_str()?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .ok()?;
            let s = String::from_utf8(raw).ok()?;
            let (u, p) = s.split_once(':')?;
            Some((u.to_string(), p.to_string()))
        })
    }

    pub fn set(&mut self, registry: &str, user: &str, password: &str) {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        if !self.value.is_object() {
            self.value = serde_json::json!({});
        }
        let auths = self.value.as_object_mut().and_then(|o| {
            o.entry("auths")
                .or_insert_with(|| serde_json::json!({}))
                .as_object_mut()
        });
        if let Some(a) = auths {
            a.insert(registry.to_string(), serde_json::json!({ "auth": auth }));
        }
    }

    /// Remove a registry's credentials; whether there were any.
    pub fn remove(&mut self, registry: &str) -> bool {
        let Some(auths) = self.value.get_mut("auths").and_then(|a| a.as_object_mut()) else {
            return false;
        };
        let mut any = false;
        for k in Self::keys(registry) {
            any |= auths.remove(&k).is_some();
        }
        any
    }

    /// Write atomically (temp file + rename), mode 0600.
    pub fn save(&self) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        io_ctx(std::fs::create_dir_all(dir), || {
            format!("create {}", dir.display())
        })?;
        let tmp = dir.join(format!(".config.json.{:x}", rand::random::<u64>()));
        let bytes = serde_json::to_vec_pretty(&self.value)
            .map_err(|e| invalid("docker config", e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        let r = write();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        io_ctx(r, || format!("write {}", self.path.display()))
    }
}

// ---------------------------------------------------------------- connection

enum AuthState {
    Anonymous,
    Basic,
    Bearer(String),
}

/// One registry, one repository, with the auth dance done once and redone on expiry.
struct Conn {
    http: reqwest::Client,
    base: Url,
    registry: String,
    repo: String,
    creds: Option<(String, String)>,
    actions: &'static str,
    auth: tokio::sync::RwLock<AuthState>,
}

fn is_local(host: &str) -> bool {
    let h = host
        .rsplit_once(':')
        .map(|(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
        .unwrap_or(host);
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h.starts_with("127.") || h == "::1"
}

fn network(registry: &str, e: reqwest::Error) -> Error {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::Network {
        registry: registry.to_string(),
        reason: msg,
    }
}

/// The spec's error message from a response body.
async fn error_message(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    let msg = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let e = v.get("errors")?.as_array()?.first()?.clone();
            Some(format!(
                "{}: {}",
                e.get("code").and_then(|c| c.as_str()).unwrap_or("?"),
                e.get("message").and_then(|c| c.as_str()).unwrap_or("")
            ))
        })
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(300)])
                .trim()
                .to_string()
        });
    (status, msg)
}

/// Parse `Bearer realm="…",service="…",scope="…"` parameters.
fn challenge_params(h: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rest = h.split_once(' ').map(|x| x.1).unwrap_or("");
    let mut s = rest;
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_string();
        let (v, next) = if let Some(a) = after.strip_prefix('"') {
            match a.find('"') {
                Some(i) => (a[..i].to_string(), &a[i + 1..]),
                None => (a.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(i) => (after[..i].to_string(), &after[i..]),
                None => (after.to_string(), ""),
            }
        };
        out.push((k, v));
        s = next.trim_start_matches(',').trim_start();
    }
    out
}

impl Conn {
    fn new(reference: &ImageRef, opts: &Options, actions: &'static str) -> Result<Conn> {
        let registry = reference.registry().to_string();
        let host = if registry == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            registry.clone()
        };
        let scheme = if opts.insecure || is_local(&host) {
            "http"
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{host}/"))
            .map_err(|e| invalid(format!("registry {registry}"), e.to_string()))?;
        let mut b = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            .pool_max_idle_per_host(16)
            .user_agent(concat!("gabang/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &opts.ca_cert {
            let pem = io_ctx(std::fs::read(ca), || format!("read CA {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        let http = b
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => DockerConfig::load(opts.docker_config.as_deref())?.credentials(&registry),
        };
        Ok(Conn {
            http,
            base,
            registry,
            repo: reference.repository().to_string(),
            creds,
            actions,
            auth: tokio::sync::RwLock::new(AuthState::Anonymous),
        })
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|e| invalid(format!("URL {path}"), e.to_string()))
    }

    async fn auth_header(&self) -> Option<String> {
        match &*self.auth.read().await {
            AuthState::Anonymous => None,
            AuthState::Basic => self.creds.as_ref().map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
            AuthState::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }

    /// Answer a 401 challenge: switch to basic, or fetch a bearer token for our scope.
    async fn answer(&self, challenge: &str) -> Result<()> {
        let lower = challenge.to_ascii_lowercase();
        if lower.starts_with("basic") {
            if self.creds.is_none() {
                return Err(Error::Auth {
                    registry: self.registry.clone(),
                    reason: "the registry wants a username and password".into(),
                });
            }
            *self.auth.write().await = AuthState::Basic;
            return Ok(());
        }
        if !lower.starts_with("bearer") {
            return Err(Error::Auth {
                registry: self.registry.clone(),
                reason: format!("unsupported challenge {challenge:?}"),
            });
        }
        let params = challenge_params(challenge);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let realm = get("realm").ok_or_else(|| Error::Auth {
            registry: self.registry.clone(),
            reason: "bearer challenge without realm".into(),
        })?;
        let mut url = Url::parse(&realm)
            .map_err(|e| invalid(format!("token realm {realm}"), e.to_string()))?;
        {
            let mut qp = url.query_pairs_mut();
            if let Some(s) = get("service") {
                qp.append_pair("service", &s);
            }
            qp.append_pair(
                "scope",
                &format!("repository:{}:{}", self.repo, self.actions),
            );
            if let Some(s) = get("scope") {
                if !s.starts_with(&format!("repository:{}:", self.repo)) {
                    qp.append_pair("scope", &s);
                }
            }
        }
        let mut req = self.http.get(url);
        if let Some((u, p)) = &self.creds {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.map_err(|e| network(&self.registry, e))?;
        if !resp.status().is_success() {
            let (st, msg) = error_message(resp).await;
            return Err(Error::Auth {
                registry: self.registry.clone(),
                reason: format!("token endpoint answered {st}: {msg}"),
            });
        }
        let v: serde_json::Value = resp
            .json_value()
            .await
            .map_err(|e| network(&self.registry, e))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| Error::Auth {
                registry: self.registry.clone(),
                reason: "token endpoint returned no token".into(),
            })?;
        *self.auth.write().await = AuthState::Bearer(token.to_string());
        Ok(())
    }

    /// Send a request built by `build` (called again for the retry after a 401).
    async fn send(
        &self,
        what: &str,
        build: impl Fn() -> Result<reqwest::RequestBuilder>,
    ) -> Result<reqwest::Response> {
        for attempt in 0..2 {
            let mut req = build()?;
            if let Some(h) = self.auth_header().await {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = req.send().await.map_err(|e| network(&self.registry, e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let ch = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                self.answer(&ch).await?;
                continue;
            }
            if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
                let (st, msg) = error_message(resp).await;
                return Err(Error::Auth {
                    registry: self.registry.clone(),
                    reason: format!("{what}: {st} {msg}"),
                });
            }
            return Ok(resp);
        }
        Err(Error::Auth {
            registry: self.registry.clone(),
            reason: format!("{what}: still unauthorized"),
        })
    }

    fn fail(&self, what: &str) -> impl FnOnce((StatusCode, String)) -> Error + '_ {
        let what = what.to_string();
        move |(status, message)| {
            if status == StatusCode::NOT_FOUND {
                Error::NotFound {
                    registry: self.registry.clone(),
                    what: format!("{what} ({message})"),
                }
            } else {
                Error::Registry {
                    registry: self.registry.clone(),
                    what,
                    status: status.as_u16(),
                    message,
                }
            }
        }
    }

    /// Check the registry answers and authenticate up front (so streamed bodies never meet a 401).
    async fn ping(&self) -> Result<()> {
        let url = self.url("v2/")?;
        let resp = self
            .send("GET /v2/", || Ok(self.http.get(url.clone())))
            .await?;
        if !resp.status().is_success() {
            return Err(self.fail("GET /v2/")(error_message(resp).await));
        }
        // Get a token for our repository scope now, if the registry uses tokens.
        let probe = self.url(&format!("v2/{}/tags/list", self.repo))?;
        let _ = self
            .send("tags", || Ok(self.http.get(probe.clone())))
            .await?;
        Ok(())
    }

    /// HEAD a blob: Some(size) when the registry has it in this repository.
    async fn has_blob(&self, d: &str) -> Result<Option<u64>> {
        let url = self.url(&format!("v2/{}/blobs/{d}", self.repo))?;
        let resp = self
            .send("HEAD blob", || Ok(self.http.head(url.clone())))
            .await?;
        Ok(resp.status().is_success().then(|| {
            resp.headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        }))
    }
}

trait JsonValue {
    async fn json_value(self) -> reqwest::Result<serde_json::Value>;
}
impl JsonValue for reqwest::Response {
    async fn json_value(self) -> reqwest::Result<serde_json::Value> {
        let b = self.bytes().await?;
        Ok(serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("tokio runtime: {e}")))
}

fn bars(opts: &Options) -> MultiProgress {
    let target = if opts.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    MultiProgress::with_draw_target(target)
}

fn bar(mp: &MultiProgress, digest: &str, size: u64) -> ProgressBar {
    let b = mp.add(ProgressBar::new(size));
    let style = ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    b.set_style(style);
    let short = digest.split_once(':').map(|x| x.1).unwrap_or(digest);
    b.set_prefix(short.chars().take(12).collect::<String>());
    b
}

fn resolve_location(conn: &Conn, resp: &reqwest::Response) -> Result<Url> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Registry {
            registry: conn.registry.clone(),
            what: "upload".into(),
            status: resp.status().as_u16(),
            message: "no Location header".into(),
        })?;
    conn.base
        .join(loc)
        .map_err(|e| invalid(format!("Location {loc}"), e.to_string()))
}

fn file_body(path: &Path, offset: u64, len: u64, pb: ProgressBar) -> Result<reqwest::Body> {
    use std::io::{Seek, SeekFrom};
    let mut f = io_ctx(std::fs::File::open(path), || {
        format!("open {}", path.display())
    })?;
    io_ctx(f.seek(SeekFrom::Start(offset)), || {
        format!("seek {}", path.display())
    })?;
    let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(f), len);
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20).inspect(move |c| {
        if let Ok(c) = c {
            pb.inc(c.len() as u64);
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

// ---------------------------------------------------------------- push

enum Sent {
    Skipped,
    Mounted,
    Uploaded(u64),
}

async fn push_blob(
    conn: &Conn,
    blobs: &BlobStore,
    d: &Digest,
    size: u64,
    opts: &Options,
    pb: ProgressBar,
) -> Result<Sent> {
    let ds = d.to_string();
    if conn.has_blob(&ds).await?.is_some() {
        pb.finish_with_message("exists");
        return Ok(Sent::Skipped);
    }
    let path = blobs.path(d);
    // Mount without `from` (OCI 1.1): a registry that finds the blob elsewhere mounts it,
    // others just open an upload session.
    let start = conn.url(&format!("v2/{}/blobs/uploads/?mount={ds}", conn.repo))?;
    let resp = conn
        .send("start upload", || {
            Ok(conn.http.post(start.clone()).header(CONTENT_LENGTH, "0"))
        })
        .await?;
    if resp.status() == StatusCode::CREATED {
        pb.finish_with_message("mounted");
        return Ok(Sent::Mounted);
    }
    if resp.status() != StatusCode::ACCEPTED {
        return Err(conn.fail(&format!("start upload of {ds}"))(
            error_message(resp).await,
        ));
    }
    let mut loc = resolve_location(conn, &resp)?;
    if size > opts.chunked_threshold {
        let mut offset = 0u64;
        let mut failures = 0;
        while offset < size {
            let len = opts.chunk_size.min(size - offset);
            let end = offset + len - 1;
            let u = loc.clone();
            let pbc = pb.clone();
            let res = conn
                .send("upload chunk", || {
                    Ok(conn
                        .http
                        .patch(u.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header("Content-Range", format!("{offset}-{end}"))
                        .header(CONTENT_LENGTH, len.to_string())
                        .body(file_body(&path, offset, len, pbc.clone())?))
                })
                .await;
            match res {
                Ok(r) if r.status() == StatusCode::ACCEPTED => {
                    loc = resolve_location(conn, &r)?;
                    offset = end + 1;
                    continue;
                }
                Ok(r) if r.status() != StatusCode::RANGE_NOT_SATISFIABLE => {
                    return Err(conn.fail(&format!("upload chunk of {ds}"))(
                        error_message(r).await,
                    ));
                }
                Ok(_) | Err(Error::Network { .. }) if failures < 5 => {
                    failures += 1;
                }
                Ok(r) => {
                    return Err(conn.fail(&format!("upload chunk of {ds}"))(
                        error_message(r).await,
                    ))
                }
                Err(e) => return Err(e),
            }
            // Resume: ask the server how much it has. Right after a broken connection the
            // pool may still hand out one that is dead too: that counts as one more failure.
            let u = loc.clone();
            let st = loop {
                match conn
                    .send("upload status", || Ok(conn.http.get(u.clone())))
                    .await
                {
                    Err(Error::Network { .. }) if failures < 5 => failures += 1,
                    r => break r?,
                }
            };
            if st.status() != StatusCode::NO_CONTENT {
                return Err(conn.fail(&format!("upload status of {ds}"))(
                    error_message(st).await,
                ));
            }
            loc = resolve_location(conn, &st).unwrap_or(loc);
            let have = st
                .headers()
                .get("Range")
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.split_once('-'))
                .and_then(|(_, e)| e.parse::<u64>().ok())
                .map(|e| e + 1)
                .unwrap_or(0);
            // "0-0" is ambiguous (nothing or one byte); a restart from 0 is always right.
            offset = if have <= 1 { 0 } else { have };
            pb.set_position(offset);
        }
        let mut u = loc.clone();
        u.query_pairs_mut().append_pair("digest", &ds);
        let r = conn
            .send("finish upload", || {
                Ok(conn.http.put(u.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(conn.fail(&format!("finish upload of {ds}"))(
                error_message(r).await,
            ));
        }
    } else {
        let mut u = loc.clone();
        u.query_pairs_mut().append_pair("digest", &ds);
        let r = conn
            .send("upload", || {
                pb.set_position(0);
                Ok(conn
                    .http
                    .put(u.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size.to_string())
                    .body(file_body(&path, 0, size, pb.clone())?))
            })
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(conn.fail(&format!("upload of {ds}"))(
                error_message(r).await,
            ));
        }
    }
    pb.finish_with_message("pushed");
    Ok(Sent::Uploaded(size))
}

/// Push the local image `local` (any reference `resolve_image` takes) to `dest`.
pub fn push(store: &Store, local: &str, dest: &ImageRef, opts: &Options) -> Result<PushReport> {
    let image = store.resolve_image(local)?;
    runtime()?.block_on(push_async(store, &image, dest, opts))
}

async fn push_async(
    store: &Store,
    image: &Image,
    dest: &ImageRef,
    opts: &Options,
) -> Result<PushReport> {
    let conn = Arc::new(Conn::new(dest, opts, "pull,push")?);
    conn.ping().await?;
    let mut blobs: Vec<(Digest, u64)> =
        vec![(image.config_digest.clone(), image.manifest.config().size())];
    for l in image.manifest.layers() {
        blobs.push((Digest::try_from(l.digest())?, l.size()));
    }
    let mut seen = std::collections::HashSet::new();
    blobs.retain(|(d, _)| seen.insert(d.clone()));
    let mp = bars(opts);
    // One task per blob on the runtime's threads (hashing and I/O spread over the cores).
    let results: Vec<Result<Sent>> = futures_util::stream::iter(blobs.iter().map(|(d, size)| {
        let pb = bar(&mp, &d.to_string(), *size);
        let (conn, bs, o, d, size) = (
            conn.clone(),
            store.blobs().clone(),
            opts.clone(),
            d.clone(),
            *size,
        );
        async move {
            tokio::spawn(async move { push_blob(&conn, &bs, &d, size, &o, pb).await })
                .await
                .unwrap_or_else(|e| Err(Error::Config(format!("upload task failed: {e}"))))
        }
    }))
    .buffer_unordered(opts.concurrency.max(1))
    .collect()
    .await;
    let mut report = PushReport::default();
    for r in results {
        match r? {
            Sent::Skipped => report.skipped += 1,
            Sent::Mounted => report.mounted += 1,
            Sent::Uploaded(n) => {
                report.uploaded += 1;
                report.bytes_uploaded += n;
            }
        }
    }
    let bytes = store.blobs().read(&image.manifest_digest)?;
    let md = image.manifest_digest.to_string();
    let reference = dest.tag().map(str::to_string).unwrap_or_else(|| md.clone());
    let url = conn.url(&format!("v2/{}/manifests/{reference}", conn.repo))?;
    let mt = image.manifest_media_type.clone();
    let resp = conn
        .send("put manifest", || {
            Ok(conn
                .http
                .put(url.clone())
                .header(CONTENT_TYPE, mt.clone())
                .body(bytes.clone()))
        })
        .await?;
    if resp.status() != StatusCode::CREATED {
        return Err(conn.fail("put manifest")(error_message(resp).await));
    }
    if let Some(got) = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
    {
        if got != md {
            return Err(Error::DigestMismatch {
                what: "pushed manifest".into(),
                expected: md,
                actual: got.to_string(),
            });
        }
    }
    report.manifest_digest = md;
    Ok(report)
}

// ---------------------------------------------------------------- pull

/// Pull `reference` into the store and register it under its tag (which unpacks its layers).
pub fn pull(store: &Store, reference: &ImageRef, opts: &Options) -> Result<(Image, PullReport)> {
    let _lease = store.lease()?;
    let f = fetch(store, reference, opts)?;
    let tags: Vec<ImageRef> = if reference.tag().is_some() && reference.digest().is_none() {
        vec![reference.clone()]
    } else {
        vec![]
    };
    let image = store.add_manifest(&f.manifest, &f.media_type, &tags)?;
    Ok((image, f.report))
}

/// A manifest whose config and layers are in the content store, verified, not yet an image.
pub struct Fetched {
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub report: PullReport,
}

/// Download the manifest (the linux/amd64 one of an index) and every blob it needs into the
/// content store, each verified against its digest and size before it is committed. Callers
/// register the image with `Store::add_manifest` (as [`pull`] does) while holding a lease.
pub fn fetch(store: &Store, reference: &ImageRef, opts: &Options) -> Result<Fetched> {
    runtime()?.block_on(pull_async(store, reference, opts))
}

async fn get_manifest(
    conn: &Conn,
    reference: &str,
    expected: Option<&str>,
) -> Result<(Vec<u8>, String, String)> {
    let url = conn.url(&format!("v2/{}/manifests/{reference}", conn.repo))?;
    let mut accept = HeaderMap::new();
    accept.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_str(&ALL_MANIFEST_TYPES.join(", "))
            .map_err(|e| invalid("Accept", e.to_string()))?,
    );
    let resp = conn
        .send("get manifest", || {
            Ok(conn
                .http
                .request(Method::GET, url.clone())
                .headers(accept.clone()))
        })
        .await?;
    if !resp.status().is_success() {
        return Err(conn.fail(&format!("manifest {}:{reference}", conn.repo))(
            error_message(resp).await,
        ));
    }
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
    let header_digest = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| network(&conn.registry, e))?
        .to_vec();
    if bytes.len() > 4 << 20 {
        return Err(invalid("manifest", "larger than 4 MiB"));
    }
    let want = expected.map(str::to_string).or(header_digest);
    let algo = want
        .as_deref()
        .and_then(|w| w.parse::<Digest>().ok())
        .map(|d| d.algorithm())
        .unwrap_or(gabang_content::digest::Algorithm::Sha256);
    let actual = Digest::of(algo, &bytes).to_string();
    if let Some(w) = want {
        if w != actual {
            return Err(Error::DigestMismatch {
                what: format!("manifest {}:{reference}", conn.repo),
                expected: w,
                actual,
            });
        }
    }
    let parsed_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        });
    let mt = parsed_type
        .or(ct)
        .unwrap_or_else(|| manifest::OCI_MANIFEST.to_string());
    Ok((bytes, mt, actual))
}

async fn pull_blob(
    conn: &Conn,
    blobs: &BlobStore,
    d: &Digest,
    size: u64,
    pb: ProgressBar,
) -> Result<Option<u64>> {
    if blobs.exists(d) {
        pb.finish_with_message("exists");
        return Ok(None);
    }
    let ds = d.to_string();
    let url = conn.url(&format!("v2/{}/blobs/{ds}", conn.repo))?;
    let resp = conn
        .send("get blob", || Ok(conn.http.get(url.clone())))
        .await?;
    if !resp.status().is_success() {
        return Err(conn.fail(&format!("blob {ds}"))(error_message(resp).await));
    }
    let mut w = blobs.writer(d.algorithm())?;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let c = chunk.map_err(|e| network(&conn.registry, e))?;
        tokio::task::block_in_place(|| w.write_all(&c)).map_err(|e| Error::Io {
            context: format!("write blob {ds}"),
            source: e,
        })?;
        pb.inc(c.len() as u64);
    }
    let store_err = |e: gabang_content::Error| match e {
        gabang_content::Error::DigestMismatch {
            expected, actual, ..
        } => Error::DigestMismatch {
            what: format!("blob from {}", conn.registry),
            expected,
            actual,
        },
        other => other.into(),
    };
    tokio::task::block_in_place(|| w.commit(Some(d), Some(size))).map_err(store_err)?;
    pb.finish_with_message("pulled");
    Ok(Some(size))
}

async fn pull_async(store: &Store, reference: &ImageRef, opts: &Options) -> Result<Fetched> {
    let conn = Arc::new(Conn::new(reference, opts, "pull")?);
    conn.ping().await?;
    let refname = reference
        .digest()
        .map(str::to_string)
        .or_else(|| reference.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".into());
    let (mut bytes, mut mt, mut digest) = get_manifest(&conn, &refname, reference.digest()).await?;
    let mut parsed = manifest::parse(&bytes, Some(&mt)).map_err(|m| invalid("manifest", m))?;
    if parsed.is_index {
        let child = manifest::pick_platform(&parsed.children)
            .cloned()
            .ok_or_else(|| {
                Error::Unsupported(format!("{refname}: the index has no linux/amd64 image"))
            })?;
        (bytes, mt, digest) = get_manifest(&conn, &child.digest, Some(&child.digest)).await?;
        parsed = manifest::parse(&bytes, Some(&mt)).map_err(|m| invalid("manifest", m))?;
        if parsed.is_index {
            return Err(Error::Unsupported("nested index".into()));
        }
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid("manifest", e.to_string()))?;
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    let desc = |v: &serde_json::Value| -> Result<(Digest, u64)> {
        let d: Digest = v
            .get("digest")
            .and_then(|d| d.as_str())
            .unwrap_or("")
            .parse()?;
        let s = v
            .get("size")
            .and_then(|s| s.as_u64())
            .ok_or_else(|| invalid("manifest", "descriptor without size"))?;
        Ok((d, s))
    };
    blobs.push(desc(&doc["config"])?);
    for l in doc["layers"].as_array().into_iter().flatten() {
        blobs.push(desc(l)?);
    }
    let mp = bars(opts);
    let results: Vec<Result<Option<u64>>> =
        futures_util::stream::iter(blobs.iter().map(|(d, s)| {
            let pb = bar(&mp, &d.to_string(), *s);
            let (conn, bs, d, s) = (conn.clone(), store.blobs().clone(), d.clone(), *s);
            async move {
                tokio::spawn(async move { pull_blob(&conn, &bs, &d, s, pb).await })
                    .await
                    .unwrap_or_else(|e| Err(Error::Config(format!("download task failed: {e}"))))
            }
        }))
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    let mut report = PullReport {
        manifest_digest: digest.clone(),
        ..Default::default()
    };
    for r in results {
        match r? {
            Some(n) => {
                report.downloaded += 1;
                report.bytes_downloaded += n;
            }
            None => report.present += 1,
        }
    }
    Ok(Fetched {
        manifest: bytes,
        media_type: mt,
        report,
    })
}

/// Check credentials against a registry (`GET /v2/` with the auth flow), then store them.
pub fn login(registry: &str, user: &str, password: &str, opts: &Options) -> Result<()> {
    let reference = ImageRef::parse(&format!("{registry}/gabang-login-check:latest"))?;
    let mut o = opts.clone();
    o.credentials = Some((user.to_string(), password.to_string()));
    runtime()?.block_on(async {
        let conn = Conn::new(&reference, &o, "pull")?;
        let url = conn.url("v2/")?;
        let resp = conn
            .send("GET /v2/", || Ok(conn.http.get(url.clone())))
            .await?;
        if !resp.status().is_success() {
            return Err(conn.fail("GET /v2/")(error_message(resp).await));
        }
        // A registry without auth accepts anyone; with basic or token auth the retry proved them.
        Ok(())
    })?;
    let mut cfg = DockerConfig::load(opts.docker_config.as_deref())?;
    cfg.set(registry, user, password);
    cfg.save()
}

/// Forget stored credentials; whether there were any.
pub fn logout(registry: &str, opts: &Options) -> Result<bool> {
    let mut cfg = DockerConfig::load(opts.docker_config.as_deref())?;
    let had = cfg.remove(registry);
    if had {
        cfg.save()?;
    }
    Ok(had)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing_and_locality() {
        let p = challenge_params(
            r#"Bearer realm="http://h:1/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p[0], ("realm".into(), "http://h:1/token".into()));
        assert_eq!(p[1], ("service".into(), "reg".into()));
        assert_eq!(p[2], ("scope".into(), "repository:a/b:pull,push".into()));
        assert!(is_local("localhost:5000") && is_local("127.0.0.1:1") && is_local("[::1]:5000"));
        assert!(!is_local("example.com:5000"));
    }

    #[test]
    fn docker_config_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d/config.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            r#"{"auths":{"https://other:1":{"auth":"dTpw"}},"credsStore":"x"}"#,
        )
        .unwrap();
        let mut c = DockerConfig::load(Some(&p)).unwrap();
        assert_eq!(c.credentials("other:1"), Some(("u".into(), "p".into())));
        c.set("localhost:5000", "al:ice", "pw");
        c.save().unwrap();
        let c2 = DockerConfig::load(Some(&p)).unwrap();
        assert_eq!(
            c2.credentials("localhost:5000"),
            Some(("al".into(), "ice:pw".into()))
        );
        let raw = std::fs::read_to_string(&p).unwrap();
        assert!(raw.contains("credsStore"));
        let mut c3 = c2;
        assert!(c3.remove("localhost:5000") && !c3.remove("localhost:5000"));
    }
}
