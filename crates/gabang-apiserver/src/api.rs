//! Request handling: authentication, routing of `/api` and `/apis` paths to the
//! resource table, and the verbs (get, list, watch, create, update, patch, delete,
//! deletecollection, status, scale, binding).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use gabang_store::{Backend, EventKind, KeyValue, ListOptions, StoreError};
use http::{Method, StatusCode};
use rand::Rng;
use serde_json::{json, Value};

use crate::discovery;
use crate::managed;
use crate::resources::{self, ResourceDef};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::stats::Verb;
use crate::status::ApiError;
use crate::table;
use crate::validate;

/// Largest request body accepted (Kubernetes' limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Shared by every request.
pub struct AppState {
    pub store: Arc<dyn Backend>,
    pub token: String,
    pub addr: String,
    pub counters: Arc<crate::stats::Counters>,
    /// Namespaces this process is finishing (`namespaces.rs`).
    pub purging: std::sync::Mutex<std::collections::HashSet<String>>,
}

type ApiResult<T> = Result<T, ApiError>;

fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (
        code,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn ok(v: Value) -> ApiResult<Response> {
    Ok(json_response(StatusCode::OK, &v))
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The request, parsed once.
struct Req {
    method: Method,
    query: HashMap<String, String>,
    table: bool,
    /// `as=PartialObjectMetadata[List]`: metadata-only objects (metadata informers).
    metadata_only: bool,
    content_type: String,
    user_agent: String,
    body: bytes::Bytes,
}

impl Req {
    fn q(&self, k: &str) -> Option<&str> {
        self.query
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
    fn json_body(&self) -> ApiResult<Value> {
        if self.body.is_empty() {
            return Err(ApiError::bad_request("request body is empty"));
        }
        if gabang_kproto::is_protobuf(&self.content_type) {
            return gabang_kproto::decode(&self.body)
                .map_err(|e| ApiError::new(e.http_status(), e.reason(), e.to_string()));
        }
        if self.content_type.contains("protobuf") || self.content_type.contains("cbor") {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "request bodies in {} are not supported; send application/json",
                    self.content_type
                ),
            ));
        }
        match self.content_type.as_str() {
            "application/yaml" | "application/apply-patch+yaml" => parse_yaml(&self.body),
            "" | "application/json"
            | "application/merge-patch+json"
            | "application/json-patch+json"
            | "application/strategic-merge-patch+json" => serde_json::from_slice(&self.body)
                .map_err(|e| {
                    ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
                }),
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format ({other}) - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
                ),
            )),
        }
    }
    fn dry_run(&self) -> bool {
        self.q("dryRun") == Some("All")
    }
    fn strict(&self) -> bool {
        self.q("fieldValidation") == Some("Strict")
    }
    fn is_apply(&self) -> bool {
        self.content_type == "application/apply-patch+yaml"
    }
    fn manager(&self) -> String {
        managed::manager_of(self.q("fieldManager"), &self.user_agent)
    }
}

/// A YAML body (JSON is YAML too) as JSON. serde_yaml refuses alias expansion past
/// a small multiple of the document's size ("billion laughs") and nesting deeper
/// than 128 levels, so a bomb costs no more than reading its bytes.
fn parse_yaml(body: &[u8]) -> ApiResult<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    if flow_depth(body) > MAX_FLOW_DEPTH {
        return Err(ApiError::bad_request(format!(
            "the request body is not valid YAML: flow collections ([…], {{…}}) nested deeper than {MAX_FLOW_DEPTH} levels (recursion limit)"
        )));
    }
    let v: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))?;
    Ok(v)
}

/// Deepest nesting of YAML flow collections accepted. libyaml's parser takes time
/// quadratic in that depth (100 000 levels: most of a minute), so deeper bodies are
/// refused before it sees them.
const MAX_FLOW_DEPTH: usize = 100;

/// The deepest nesting of `[` and `{` outside quoted scalars and comments (an
/// over-estimate for brackets inside plain or block scalars, which is harmless).
fn flow_depth(body: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    // Whether the previous byte can precede the start of a token.
    let mut at_token_start = true;
    while i < body.len() {
        let b = body[i];
        match b {
            b'"' | b'\'' if at_token_start => {
                // A quoted scalar: skip to its closing quote.
                i += 1;
                while i < body.len() {
                    if b == b'"' && body[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if body[i] == b {
                        break;
                    }
                    i += 1;
                }
            }
            b'#' if at_token_start => {
                while i < body.len() && body[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at_token_start = b" \t\r\n[{,:-?".contains(&b);
        i += 1;
    }
    max
}

/// Reads a request body of at most [`MAX_BODY`] bytes; a longer one is handed back
/// (unread past the limit) to be held by the 413 answer, a broken one is `None`.
async fn read_body(mut body: Body) -> Result<bytes::Bytes, Option<Body>> {
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(None) };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY {
                return Err(Some(body));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// A response body that keeps the request body alive until the response has been
/// sent: an HTTP/2 server that answers before reading the whole request must then
/// reset the stream with NO_ERROR, which h2 does only if the request body is still
/// held when the response ends (dropped earlier, it resets with CANCEL, and clients
/// such as curl drop the answer).
struct HoldingBody {
    data: Option<bytes::Bytes>,
    _request: Body,
}

impl http_body::Body for HoldingBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.data.take().map(|d| Ok(http_body::Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// How much of a too large body is read (and dropped) before the 413 is sent.
const MAX_DRAIN: usize = 32 * 1024 * 1024;

/// 413 for a body over [`MAX_BODY`]. With `drain`, the rest of the body is read
/// first (up to [`MAX_DRAIN`] bytes in all), so the request ends before the answer
/// as clients expect (curl before 8.x drops an HTTP/2 answer followed by a reset
/// of its still-uploading stream); the request body is held until the answer is sent.
async fn too_large(mut request: Body, drain: bool) -> Response {
    if drain {
        use http_body_util::BodyExt;
        let mut seen = 0usize;
        while let Some(Ok(frame)) = request.frame().await {
            if let Ok(d) = frame.into_data() {
                seen += d.len();
                if seen > MAX_DRAIN {
                    break;
                }
            }
        }
    }
    let e = ApiError::new(
        413,
        "RequestEntityTooLarge",
        format!("request body over {MAX_BODY} bytes"),
    );
    let data = bytes::Bytes::from(serde_json::to_vec(&e.to_status()).unwrap_or_default());
    let mut resp = Response::new(Body::new(HoldingBody {
        data: Some(data),
        _request: request,
    }));
    *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The one handler behind the router.
pub async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Response {
    // The request log (like kube-apiserver's httplog): GABANG_LOG=gabang_apiserver::http=debug.
    let logged = tracing::enabled!(target: "gabang_apiserver::http", tracing::Level::DEBUG)
        .then(|| (req.method().clone(), req.uri().clone()));
    let resp = match handle_inner(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Some((method, uri)) = logged {
        tracing::debug!(target: "gabang_apiserver::http", "{method} {uri} {}", resp.status().as_u16());
    }
    resp
}

fn authorized(st: &AppState, req: &Request) -> bool {
    let Some(h) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let Some(tok) = h.strip_prefix("Bearer ") else {
        return false;
    };
    let (a, b) = (tok.trim().as_bytes(), st.token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle_inner(st: Arc<AppState>, req: Request) -> ApiResult<Response> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/healthz" | "/readyz" | "/livez" => {
            return Ok((
                StatusCode::OK,
                [(http::header::CONTENT_TYPE, "text/plain")],
                "ok",
            )
                .into_response())
        }
        "/version" => return ok(discovery::version()),
        _ => {}
    }
    if !authorized(&st, &req) {
        return Err(ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    if let Some((ns, name, sub)) = crate::proxy::route(&path) {
        return crate::proxy::serve(&st, &ns, &name, sub, req).await;
    }
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let accept_all = accept.to_string();
    let gzip_ok = req
        .headers()
        .get(http::header::ACCEPT_ENCODING)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|e| e.contains("gzip"));
    // The first JSON media type of Accept decides the view (clients list protobuf
    // first, which this server does not write).
    let view = accept
        .split(',')
        .map(str::trim)
        .find(|a| !a.contains("protobuf") && !a.contains("cbor"))
        .unwrap_or("");
    let table = view.contains("as=Table");
    let metadata_only = view.contains("as=PartialObjectMetadata");
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let method = req.method().clone();
    let user_agent = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<usize>().ok());
    let body = req.into_body();
    if let Some(n) = declared.filter(|n| *n > MAX_BODY) {
        return Ok(too_large(body, n <= MAX_DRAIN).await);
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(Some(held)) => return Ok(too_large(held, true).await),
        Err(None) => return Err(ApiError::bad_request("the request body could not be read")),
    };
    let r = Req {
        method,
        query,
        table,
        metadata_only,
        content_type,
        user_agent,
        body,
    };

    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["api"] => return ok(discovery::api_versions(&st.addr)),
        ["apis"] => return ok(discovery::api_group_list()),
        ["openapi", "v3"] => return ok(discovery::openapi_v3_root()),
        ["openapi", "v3", rest @ ..] => {
            let gz = crate::openapi::v3_gzip(&rest.join("/")).ok_or_else(|| {
                ApiError::new(404, "NotFound", format!("no OpenAPI document for {path}"))
            })?;
            let mut resp = if gzip_ok {
                let mut r = Body::from(gz).into_response();
                r.headers_mut().insert(
                    http::header::CONTENT_ENCODING,
                    http::HeaderValue::from_static("gzip"),
                );
                r
            } else {
                Body::from(crate::openapi::gunzip(&gz)).into_response()
            };
            let h = resp.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            h.insert(
                http::header::VARY,
                http::HeaderValue::from_static("Accept-Encoding"),
            );
            if r.q("hash").is_some() {
                h.insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("public, immutable"),
                );
            }
            return Ok(resp);
        }
        ["openapi", "v2"] => {
            if accept_all.contains("protobuf") {
                return Ok((
                    StatusCode::OK,
                    [(
                        http::header::CONTENT_TYPE,
                        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    )],
                    crate::openapi::v2_protobuf(),
                )
                    .into_response());
            }
            return ok(crate::openapi::v2_json());
        }
        ["api", v] => {
            return discovery::resource_list("", v).map_or_else(|| Err(not_found_path(&path)), ok)
        }
        ["apis", g] => {
            return discovery::api_group(g).map_or_else(|| Err(not_found_path(&path)), ok)
        }
        ["apis", g, v] => {
            return discovery::resource_list(g, v).map_or_else(|| Err(not_found_path(&path)), ok)
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found_path(&path)),
    };
    let (ns, rest): (Option<&str>, &[&str]) = match rest {
        ["namespaces", ns, plural, ..] if !matches!(*plural, "status" | "finalize") => {
            (Some(*ns), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return Err(not_found_path(&path)),
    };
    let def = resources::find(group, version, plural).ok_or_else(|| not_found_path(&path))?;
    if def.namespaced != ns.is_some() && name.is_some() {
        return Err(not_found_path(&path));
    }
    let ns = if def.namespaced { ns } else { None };
    let api = Api { st: &st, def };
    st.counters.add(match (&r.method, name) {
        (&Method::GET, None) if is_watch(&r) => Verb::Watch,
        (&Method::GET, None) => Verb::List,
        (&Method::GET, Some(_)) if is_watch(&r) => Verb::Watch,
        (&Method::GET, Some(_)) => Verb::Get,
        (&Method::POST, _) => Verb::Create,
        (&Method::PUT, _) => Verb::Update,
        (&Method::PATCH, _) => Verb::Patch,
        _ => Verb::Delete,
    });
    match (r.method.clone(), name, sub) {
        (Method::GET, None, None) => {
            if is_watch(&r) {
                api.watch(ns, &r, None).await
            } else {
                api.list(ns, &r).await
            }
        }
        (Method::POST, None, None) => api.create(ns, &r).await,
        (Method::DELETE, None, None) => api.delete_collection(ns, &r).await,
        (Method::GET, Some(n), None) => {
            if is_watch(&r) {
                api.watch(ns, &r, Some(n)).await
            } else {
                api.get(ns, n, &r).await
            }
        }
        (Method::PUT, Some(n), None) => api.update(ns, n, &r, Sub::Main).await,
        (Method::PATCH, Some(n), None) => api.patch(ns, n, &r, Sub::Main).await,
        (Method::DELETE, Some(n), None) => api.delete(ns, n, &r).await,
        (Method::GET, Some(n), Some("status")) if def.status => api.get(ns, n, &r).await,
        (Method::PUT, Some(n), Some("status")) if def.status => {
            api.update(ns, n, &r, Sub::Status).await
        }
        (Method::PATCH, Some(n), Some("status")) if def.status => {
            api.patch(ns, n, &r, Sub::Status).await
        }
        (Method::PUT, Some(n), Some("finalize")) if def.kind == "Namespace" => {
            api.update(ns, n, &r, Sub::Finalize).await
        }
        (Method::GET, Some(n), Some("scale")) if def.scale => {
            let (obj, _) = api.read(ns, n).await?;
            ok(to_scale(def, &obj))
        }
        (Method::PUT, Some(n), Some("scale")) if def.scale => api.scale(ns, n, &r, false).await,
        (Method::PATCH, Some(n), Some("scale")) if def.scale => api.scale(ns, n, &r, true).await,
        (Method::POST, Some(n), Some("binding")) if def.kind == "Pod" => api.bind(ns, n, &r).await,
        (Method::POST, Some(n), Some("eviction")) if def.kind == "Pod" => {
            api.evict(ns, n, &r).await
        }
        (Method::POST, Some(n), Some("binding" | "scale" | "status")) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("POST is not allowed on {}/{n}", def.plural),
        )),
        (m, _, _) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{m} is not supported on {path}"),
        )),
    }
}

fn is_watch(r: &Req) -> bool {
    matches!(r.q("watch"), Some("true" | "1"))
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sub {
    Main,
    Status,
    /// `namespaces/N/finalize`: only `spec.finalizers` changes.
    Finalize,
    /// `pods/P/binding`: the main resource, `spec.nodeName` set once.
    Binding,
}

/// Decodes a stored value, stamping `metadata.resourceVersion` from the store.
pub(crate) fn decode(kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    v["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
    Ok(v)
}

pub(crate) fn encode(obj: &Value) -> Vec<u8> {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&o).unwrap_or_default()
}

/// Fields of `input` (non-null) that the typed round trip dropped: unknown fields.
fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                if v.is_null() || resources::is_empty_map_field(key, v) {
                    continue;
                }
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    None => out.push(p),
                    Some(kv) => unknown_fields(v, kv, &p, out),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (idx, (a, b)) in i.iter().zip(k).enumerate() {
                unknown_fields(a, b, &format!("{path}[{idx}]"), out);
            }
        }
        _ => {}
    }
}

/// An object as `meta.k8s.io/v1 PartialObjectMetadata`: its metadata only.
fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

fn name_of(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn to_scale(def: &ResourceDef, obj: &Value) -> Value {
    let m = &obj["metadata"];
    let sel = LabelSelector::from_object(&obj["spec"]["selector"]);
    let _ = sel;
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let _ = def;
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

fn random_suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// How to delete: propagation policy, grace period, preconditions, dry run.
#[derive(Default, Clone, Copy)]
pub(crate) struct DeleteOpts<'a> {
    pub policy: Option<&'a str>,
    pub grace: Option<i64>,
    pub precondition_rv: Option<&'a str>,
    pub precondition_uid: Option<&'a str>,
    pub dry_run: bool,
}

pub(crate) struct Api<'a> {
    pub st: &'a Arc<AppState>,
    pub def: &'static ResourceDef,
}

impl Api<'_> {
    fn key(&self, ns: Option<&str>, name: &str) -> String {
        resources::key(self.def, ns, name)
    }

    fn op<'o>(&self, manager: &'o str, sub: Sub, time: &'o str) -> managed::Op<'o> {
        managed::Op {
            manager,
            api_version: self.def.api_version(),
            subresource: match sub {
                Sub::Main => "",
                Sub::Status => "status",
                Sub::Finalize => "finalize",
                Sub::Binding => "binding",
            },
            time,
        }
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(self.def.group, self.def.plural, name)
    }

    async fn read(&self, ns: Option<&str>, name: &str) -> ApiResult<(Value, i64)> {
        let got = self.st.store.get(&self.key(ns, name), None).await?;
        let kv = got.kv.ok_or_else(|| self.not_found(name))?;
        Ok((decode(&kv)?, kv.mod_revision))
    }

    fn render_one(&self, r: &Req, obj: Value) -> ApiResult<Response> {
        if r.table {
            let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
            return ok(table::table(self.def.kind, &[obj], meta, true));
        }
        if r.metadata_only {
            return ok(partial(&obj));
        }
        ok(obj)
    }

    async fn get(&self, ns: Option<&str>, name: &str, r: &Req) -> ApiResult<Response> {
        let (obj, _) = self.read(ns, name).await?;
        self.render_one(r, obj)
    }

    async fn list(&self, ns: Option<&str>, r: &Req) -> ApiResult<Response> {
        let labels = LabelSelector::parse(r.q("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(r.q("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let limit: usize = r.q("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut opts = ListOptions {
            limit,
            ..Default::default()
        };
        if let Some(c) = r.q("continue") {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .map_err(|_| ApiError::bad_request("invalid continue token"))?;
            let tok: Value = serde_json::from_slice(&raw)
                .map_err(|_| ApiError::bad_request("invalid continue token"))?;
            opts.revision = tok["rv"].as_i64();
            opts.start_key = tok["start"].as_str().map(String::from);
        }
        let prefix = resources::prefix(self.def, ns);
        let page = self.st.store.list(&prefix, opts).await?;
        let mut items = Vec::new();
        for kv in &page.items {
            let obj = decode(kv)?;
            if labels.matches(&obj) && fields.matches(&obj) {
                items.push(obj);
            }
        }
        let mut meta = json!({"resourceVersion": page.revision.to_string()});
        if let Some(next) = &page.continue_key {
            let tok = json!({"rv": page.revision, "start": next});
            meta["continue"] =
                json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tok.to_string()));
        }
        if r.table {
            return ok(table::table(self.def.kind, &items, meta, true));
        }
        if r.metadata_only {
            let items: Vec<Value> = items.iter().map(partial).collect();
            return ok(
                json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
            );
        }
        ok(
            json!({"kind": format!("{}List", self.def.kind), "apiVersion": self.def.api_version(), "metadata": meta, "items": items}),
        )
    }

    /// Fills identity, defaults and checks an object for create; returns it ready to store.
    async fn prepare_create(
        &self,
        ns: Option<&str>,
        mut obj: Value,
        strict: bool,
    ) -> ApiResult<Value> {
        let def = self.def;
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        for (field, want) in [
            ("apiVersion", def.api_version()),
            ("kind", def.kind.to_string()),
        ] {
            match obj.get(field).and_then(Value::as_str) {
                None | Some("") => obj[field] = json!(want),
                Some(have) if have == want => {}
                Some(have) => {
                    return Err(ApiError::bad_request(format!(
                        "the {field} of the object ({have}) does not match the {field} of the endpoint ({want})"
                    )))
                }
            }
        }
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let meta = &mut obj["metadata"];
        if meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            if let Some(g) = meta.get("generateName").and_then(Value::as_str) {
                meta["name"] = json!(format!("{g}{}", random_suffix()));
            }
        }
        if let Some(ns) = ns {
            match meta.get("namespace").and_then(Value::as_str) {
                None | Some("") => meta["namespace"] = json!(ns),
                Some(have) if have == ns => {}
                Some(have) => {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the provided object ({have}) does not match the namespace sent on the request ({ns})"
                    )))
                }
            }
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        let m = meta
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(f);
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if def.has_generation() {
            m.insert("generation".into(), json!(1));
        }
        match def.kind {
            "Pod" => obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"}),
            "Deployment" | "ReplicaSet" | "Ingress" => obj["status"] = json!({}),
            _ => {}
        }
        validate::default_object(def, &mut obj);
        let obj = self.check(obj, strict)?;
        if let Some(ns) = ns {
            self.check_namespace(ns, &name_of(&obj)).await?;
        }
        Ok(obj)
    }

    /// Typed decoding (k8s-openapi), unknown-field check, validation.
    fn check(&self, obj: Value, strict: bool) -> ApiResult<Value> {
        let def = self.def;
        let name = name_of(&obj);
        let normalized = (def.normalize)(&obj).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                def.kind, def.version, def.kind
            ))
        })?;
        if strict {
            let mut unknown = Vec::new();
            unknown_fields(&obj, &normalized, "", &mut unknown);
            unknown.retain(|f| f != "metadata.resourceVersion");
            if !unknown.is_empty() {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
        }
        let errs = validate::validate(def, &normalized);
        if !errs.is_empty() {
            return Err(ApiError::invalid(def.kind, def.group, &name, &errs));
        }
        let mut out = normalized;
        if let Some(rv) = obj.pointer("/metadata/resourceVersion") {
            out["metadata"]["resourceVersion"] = rv.clone();
        }
        Ok(out)
    }

    async fn check_namespace(&self, ns: &str, name: &str) -> ApiResult<()> {
        let key = format!("/registry/namespaces/{ns}");
        let got = self.st.store.get(&key, None).await?;
        let Some(kv) = got.kv else {
            return Err(ApiError::not_found("", "namespaces", ns));
        };
        let v = decode(&kv)?;
        if v.pointer("/metadata/deletionTimestamp").is_some()
            || v.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
        {
            let res = if self.def.group.is_empty() {
                self.def.plural.to_string()
            } else {
                format!("{}.{}", self.def.plural, self.def.group)
            };
            let mut e = ApiError::new(403, "Forbidden", format!(
                "{res} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
            ));
            e.details = Some(
                json!({"name": name, "group": self.def.group, "kind": self.def.plural,
                "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}),
            );
            return Err(e);
        }
        Ok(())
    }

    async fn allocate_cluster_ip(&self, obj: &mut Value) -> ApiResult<()> {
        let ty = obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        if ty == "ExternalName"
            || obj
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        {
            return Ok(());
        }
        let page = self
            .st
            .store
            .list("/registry/services/", ListOptions::default())
            .await?;
        let used: std::collections::HashSet<String> = page
            .items
            .iter()
            .filter_map(|kv| {
                serde_json::from_slice::<Value>(&kv.value)
                    .ok()?
                    .pointer("/spec/clusterIP")?
                    .as_str()
                    .map(String::from)
            })
            .collect();
        // Each candidate is claimed with a create-only key in the store, so API
        // servers sharing one store (or concurrent creates in one) never hand out the
        // same address. A claim whose service never got stored (or was deleted)
        // goes stale after a minute and may be taken over.
        let now = chrono::Utc::now().timestamp();
        let claim = serde_json::to_vec(&json!({
            "service": format!("{}/{}", obj["metadata"]["namespace"].as_str().unwrap_or(""), name_of(obj)),
            "at": now,
        }))
        .unwrap_or_default();
        let mut found = None;
        for ip in (10u32..65534)
            .map(|i| format!("10.96.{}.{}", i / 256, i % 256))
            .filter(|ip| !used.contains(ip))
        {
            let key = format!("/registry/clusterips/{ip}");
            match self.st.store.create(&key, claim.clone(), None).await {
                Ok(_) => {
                    found = Some(ip);
                    break;
                }
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let Some(kv) = self.st.store.get(&key, None).await?.kv else {
                continue;
            };
            let at = serde_json::from_slice::<Value>(&kv.value)
                .ok()
                .and_then(|v| v["at"].as_i64())
                .unwrap_or(0);
            if now - at > 60
                && self
                    .st
                    .store
                    .update(&key, claim.clone(), kv.mod_revision, None)
                    .await
                    .is_ok()
            {
                found = Some(ip);
                break;
            }
        }
        let ip = found.ok_or_else(|| ApiError::internal("no free cluster IP in 10.96.0.0/16"))?;
        obj["spec"]["clusterIP"] = json!(ip);
        obj["spec"]["clusterIPs"] = json!([ip]);
        Ok(())
    }

    async fn create(&self, ns: Option<&str>, r: &Req) -> ApiResult<Response> {
        let body = r.json_body()?;
        let mut obj = self.prepare_create(ns, body, r.strict()).await?;
        if self.def.kind == "Service" {
            self.allocate_cluster_ip(&mut obj).await?;
        }
        let manager = r.manager();
        managed::record_update(
            None,
            &mut obj,
            &self.op(&manager, Sub::Main, &now_rfc3339()),
        );
        let name = name_of(&obj);
        if r.dry_run() {
            return Ok(json_response(StatusCode::CREATED, &obj));
        }
        let key = self.key(ns, &name);
        let rev = match self.st.store.create(&key, encode(&obj), None).await {
            Ok(rev) => rev,
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(ApiError::already_exists(
                    self.def.group,
                    self.def.plural,
                    &name,
                ))
            }
            Err(e) => return Err(e.into()),
        };
        obj["metadata"]["resourceVersion"] = json!(rev.to_string());
        if self.def.kind == "Namespace" {
            ensure_default_service_account(&self.st.store, &name).await?;
        }
        Ok(json_response(StatusCode::CREATED, &obj))
    }

    /// Stores `new` over `current` (read at `mod_rev`) with the rules of `sub`.
    async fn commit(
        &self,
        ns: Option<&str>,
        name: &str,
        (current, mod_rev): (&Value, i64),
        mut new: Value,
        sub: Sub,
        r: &Req,
    ) -> ApiResult<Value> {
        let def = self.def;
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(rv) = new
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            if !rv.is_empty() && rv != mod_rev.to_string() {
                return Err(ApiError::conflict(def.group, def.plural, name));
            }
        }
        let body_name = name_of(&new);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let mut out = match sub {
            Sub::Status => {
                let mut o = current.clone();
                o["status"] = new.get("status").cloned().unwrap_or(json!({}));
                if r.is_apply() {
                    o["metadata"]["managedFields"] = new["metadata"]["managedFields"].clone();
                }
                o
            }
            Sub::Finalize => {
                let mut o = current.clone();
                o["spec"]["finalizers"] = new
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or(json!([]));
                o
            }
            Sub::Main | Sub::Binding => {
                for f in ["apiVersion", "kind"] {
                    if new.get(f).and_then(Value::as_str).unwrap_or("").is_empty() {
                        new[f] = current[f].clone();
                    }
                }
                if !new.get("metadata").is_some_and(Value::is_object) {
                    new["metadata"] = json!({});
                }
                for f in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ] {
                    match current["metadata"].get(f) {
                        Some(v) => new["metadata"][f] = v.clone(),
                        None => {
                            if let Some(m) = new["metadata"].as_object_mut() {
                                m.remove(f);
                            }
                        }
                    }
                }
                if def.status && def.kind != "Namespace" {
                    match current.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                if def.kind == "Namespace" {
                    new["status"] = current["status"].clone();
                }
                if def.kind == "Service" {
                    for f in ["clusterIP", "clusterIPs"] {
                        if new.pointer(&format!("/spec/{f}")).is_none() {
                            if let Some(v) = current.pointer(&format!("/spec/{f}")) {
                                new["spec"][f] = v.clone();
                            }
                        }
                    }
                }
                validate::default_object(def, &mut new);
                if def.kind == "Namespace" {
                    // As in Kubernetes: status and spec.finalizers change only
                    // through their subresources (status, finalize).
                    new["status"] = current["status"].clone();
                    match current.pointer("/spec/finalizers") {
                        Some(f) => new["spec"]["finalizers"] = f.clone(),
                        None => {
                            if let Some(m) = new["spec"].as_object_mut() {
                                m.remove("finalizers");
                            }
                        }
                    }
                }
                if def.has_generation() && new.get("spec") != current.get("spec") {
                    let g = current
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    new["metadata"]["generation"] = json!(g + 1);
                }
                new
            }
        };
        out["metadata"]["resourceVersion"] = json!(mod_rev.to_string());
        let mut out = self.check(out, r.strict())?;
        if sub == Sub::Main {
            let errs = validate::validate_update(def, current, &out);
            if !errs.is_empty() {
                return Err(ApiError::invalid(def.kind, def.group, name, &errs));
            }
        }
        if !r.is_apply() {
            let given = out.pointer("/metadata/managedFields");
            if given.is_some() && given != current.pointer("/metadata/managedFields") {
                // The writer set managedFields itself (kubectl's client-side to
                // server-side apply migration does): honoured as written.
                let list = managed::entries(&out);
                managed::set_entries(&mut out, &list);
            } else {
                let manager = r.manager();
                let now = now_rfc3339();
                managed::record_update(Some(current), &mut out, &self.op(&manager, sub, &now));
            }
        }
        if r.dry_run() || out == *current {
            // A dry run, or a write that changes nothing: nothing is stored and the
            // resourceVersion stays (as in Kubernetes).
            return Ok(out);
        }
        let key = self.key(ns, name);
        // The last finalizer removed from an object being deleted: it goes now.
        let deleting = out.pointer("/metadata/deletionTimestamp").is_some();
        let no_finalizers = out
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if deleting && no_finalizers && def.kind != "Namespace" {
            return match self.st.store.delete(&key, Some(mod_rev)).await {
                Ok(d) => {
                    out["metadata"]["resourceVersion"] = json!(d.revision.to_string());
                    Ok(out)
                }
                Err(StoreError::Conflict { .. }) => {
                    Err(ApiError::conflict(def.group, def.plural, name))
                }
                Err(StoreError::NotFound { .. }) => Err(self.not_found(name)),
                Err(e) => Err(e.into()),
            };
        }
        match self
            .st
            .store
            .update(&key, encode(&out), mod_rev, None)
            .await
        {
            Ok(rev) => {
                out["metadata"]["resourceVersion"] = json!(rev.to_string());
                Ok(out)
            }
            Err(StoreError::Conflict { .. }) => {
                Err(ApiError::conflict(def.group, def.plural, name))
            }
            Err(StoreError::NotFound { .. }) => Err(self.not_found(name)),
            Err(e) => Err(e.into()),
        }
    }

    async fn update(&self, ns: Option<&str>, name: &str, r: &Req, sub: Sub) -> ApiResult<Response> {
        let body = r.json_body()?;
        let (current, mod_rev) = self.read(ns, name).await?;
        let out = self
            .commit(ns, name, (&current, mod_rev), body, sub, r)
            .await?;
        ok(out)
    }

    fn apply_patch(&self, current: &Value, r: &Req) -> ApiResult<Value> {
        let patch = r.json_body()?;
        match r.content_type.as_str() {
            "application/json-patch+json" => {
                let p: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                let mut doc = current.clone();
                json_patch::patch(&mut doc, &p).map_err(|e| ApiError::new(422, "Invalid", format!("the JSON patch could not be applied: {e}")))?;
                Ok(doc)
            }
            "application/merge-patch+json" | "application/json" => {
                let mut doc = current.clone();
                json_patch::merge(&mut doc, &patch);
                Ok(doc)
            }
            "application/strategic-merge-patch+json" | "application/apply-patch+yaml" => {
                crate::smp::apply(current, &patch).map_err(ApiError::bad_request)
            }
            other => Err(ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"))),
        }
    }

    async fn patch(&self, ns: Option<&str>, name: &str, r: &Req, sub: Sub) -> ApiResult<Response> {
        let apply = r.is_apply();
        let manager = r.manager();
        if apply && r.q("fieldManager").is_none() {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requires the fieldManager query parameter",
            ));
        }
        let force = r.q("force") == Some("true");
        for _ in 0..8 {
            let (current, mod_rev) = match self.read(ns, name).await {
                Ok(x) => x,
                Err(e) if apply && e.code == 404 && sub == Sub::Main => {
                    // Server-side apply of a new object creates it.
                    let seeded = managed::apply(
                        &json!({}),
                        &r.json_body()?,
                        &self.op(&manager, sub, &now_rfc3339()),
                        true,
                    )?;
                    let mut obj = self.prepare_create(ns, seeded, r.strict()).await?;
                    if self.def.kind == "Service" {
                        self.allocate_cluster_ip(&mut obj).await?;
                    }
                    if r.dry_run() {
                        return Ok(json_response(StatusCode::CREATED, &obj));
                    }
                    let rev = self
                        .st
                        .store
                        .create(&self.key(ns, name), encode(&obj), None)
                        .await?;
                    obj["metadata"]["resourceVersion"] = json!(rev.to_string());
                    if self.def.kind == "Namespace" {
                        ensure_default_service_account(&self.st.store, name).await?;
                    }
                    return Ok(json_response(StatusCode::CREATED, &obj));
                }
                Err(e) => return Err(e),
            };
            let mut new = if apply {
                let body = r.json_body()?;
                if !body.is_object() {
                    return Err(ApiError::bad_request(
                        "the applied configuration must be an object",
                    ));
                }
                managed::apply(
                    &current,
                    &body,
                    &self.op(&manager, sub, &now_rfc3339()),
                    force,
                )?
            } else {
                self.apply_patch(&current, r)?
            };
            let pinned = new.pointer("/metadata/resourceVersion")
                != current.pointer("/metadata/resourceVersion");
            if !pinned {
                new["metadata"]["resourceVersion"] = json!(mod_rev.to_string());
            }
            match self
                .commit(ns, name, (&current, mod_rev), new, sub, r)
                .await
            {
                Err(e) if e.reason == "Conflict" && !pinned => continue,
                Err(e) => return Err(e),
                Ok(out) => return ok(out),
            }
        }
        Err(ApiError::conflict(self.def.group, self.def.plural, name))
    }

    async fn scale(
        &self,
        ns: Option<&str>,
        name: &str,
        r: &Req,
        is_patch: bool,
    ) -> ApiResult<Response> {
        for _ in 0..8 {
            let (current, mod_rev) = self.read(ns, name).await?;
            let scale = to_scale(self.def, &current);
            let new_scale = if is_patch {
                self.apply_patch(&scale, r)?
            } else {
                r.json_body()?
            };
            let replicas = new_scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "Scale",
                    "autoscaling",
                    name,
                    &[(
                        "spec.replicas".into(),
                        format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                    )],
                ));
            }
            // A patch carries the current resourceVersion through from `scale` unless it sets
            // one itself: only a resourceVersion the client sent pins the write (else a
            // concurrent status update is a retry, not a 409).
            let pinned = new_scale
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .filter(|rv| {
                    !is_patch
                        || Some(*rv)
                            != scale
                                .pointer("/metadata/resourceVersion")
                                .and_then(Value::as_str)
                });
            if let Some(rv) = pinned {
                if rv != mod_rev.to_string() {
                    return Err(ApiError::conflict(self.def.group, self.def.plural, name));
                }
            }
            let mut new = current.clone();
            new["spec"]["replicas"] = json!(replicas);
            match self
                .commit(ns, name, (&current, mod_rev), new, Sub::Main, r)
                .await
            {
                Err(e) if e.reason == "Conflict" && pinned.is_none() => continue,
                Err(e) => return Err(e),
                Ok(out) => return ok(to_scale(self.def, &out)),
            }
        }
        Err(ApiError::conflict(self.def.group, self.def.plural, name))
    }

    async fn bind(&self, ns: Option<&str>, name: &str, r: &Req) -> ApiResult<Response> {
        let b = r.json_body()?;
        let node = b
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if node.is_empty() {
            return Err(ApiError::invalid(
                "Binding",
                "",
                name,
                &[("target.name".into(), "Required value".into())],
            ));
        }
        let (current, mod_rev) = self.read(ns, name).await?;
        if current
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
        {
            return Err(ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node")));
        }
        let mut new = current.clone();
        new["spec"]["nodeName"] = json!(node);
        self.commit(ns, name, (&current, mod_rev), new, Sub::Binding, r)
            .await?;
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ))
    }

    /// `pods/eviction` (policy/v1 Eviction): a graceful delete with the Eviction's
    /// deleteOptions. No PodDisruptionBudgets are served, so every eviction is allowed.
    async fn evict(&self, ns: Option<&str>, name: &str, r: &Req) -> ApiResult<Response> {
        let ev = r.json_body()?;
        let ev_name = name_of(&ev);
        if !ev_name.is_empty() && ev_name != name {
            return Err(ApiError::bad_request(format!(
                "name in URL does not match name in Eviction object ({ev_name} != {name})"
            )));
        }
        let ev_ns = ev
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !ev_ns.is_empty() && Some(ev_ns) != ns {
            return Err(ApiError::bad_request(format!(
                "namespace in URL does not match namespace in Eviction object ({ev_ns})"
            )));
        }
        let opts = ev.get("deleteOptions").cloned().unwrap_or(json!({}));
        let grace = match opts.get("gracePeriodSeconds") {
            None | Some(Value::Null) => None,
            Some(g) => Some(g.as_i64().filter(|g| *g >= 0).ok_or_else(|| {
                ApiError::invalid(
                    "Eviction",
                    "policy",
                    name,
                    &[(
                        "deleteOptions.gracePeriodSeconds".into(),
                        format!("Invalid value: {g}: must be greater than or equal to 0"),
                    )],
                )
            })?),
        };
        let dry_run = r.dry_run()
            || opts["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == "All"));
        self.delete_one(
            ns,
            name,
            DeleteOpts {
                policy: opts["propagationPolicy"].as_str(),
                grace,
                precondition_rv: opts
                    .pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str),
                precondition_uid: opts.pointer("/preconditions/uid").and_then(Value::as_str),
                dry_run,
            },
        )
        .await?;
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ))
    }

    async fn delete(&self, ns: Option<&str>, name: &str, r: &Req) -> ApiResult<Response> {
        let opts: Value = if r.body.is_empty() {
            json!({})
        } else {
            r.json_body()?
        };
        let policy = r
            .q("propagationPolicy")
            .map(String::from)
            .or_else(|| opts["propagationPolicy"].as_str().map(String::from));
        let grace = r
            .q("gracePeriodSeconds")
            .and_then(|g| g.parse::<i64>().ok())
            .or_else(|| opts["gracePeriodSeconds"].as_i64());
        let obj = self
            .delete_one(
                ns,
                name,
                DeleteOpts {
                    policy: policy.as_deref(),
                    grace,
                    precondition_rv: opts
                        .pointer("/preconditions/resourceVersion")
                        .and_then(Value::as_str),
                    precondition_uid: opts.pointer("/preconditions/uid").and_then(Value::as_str),
                    dry_run: r.dry_run(),
                },
            )
            .await?;
        ok(obj)
    }

    /// Deletes (or marks for deletion) one object; returns its last state.
    pub(crate) async fn delete_one(
        &self,
        ns: Option<&str>,
        name: &str,
        o: DeleteOpts<'_>,
    ) -> ApiResult<Value> {
        let DeleteOpts {
            policy,
            grace,
            precondition_rv,
            precondition_uid,
            dry_run,
        } = o;
        let def = self.def;
        let key = self.key(ns, name);
        if def.kind == "Namespace" && matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
            ));
        }
        for _ in 0..8 {
            let (mut obj, mod_rev) = self.read(ns, name).await?;
            if precondition_rv.is_some_and(|rv| rv != mod_rev.to_string())
                || precondition_uid.is_some_and(|u| {
                    obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(u)
                })
            {
                return Err(ApiError::conflict(def.group, def.plural, name));
            }
            let meta = &mut obj["metadata"];
            let already = meta.get("deletionTimestamp").is_some();
            let mut finalizers: Vec<Value> = meta
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let extra = match policy {
                Some("Foreground") => Some("foregroundDeletion"),
                Some("Orphan") => Some("orphan"),
                _ => None,
            };
            if let Some(f) = extra {
                if !finalizers.contains(&json!(f)) {
                    finalizers.push(json!(f));
                }
            }
            let pod_grace = if def.kind == "Pod"
                && !already
                && obj
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty())
            {
                let g = grace.unwrap_or_else(|| {
                    obj.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                        .unwrap_or(30)
                });
                (g > 0).then_some(g)
            } else {
                None
            };
            if def.kind == "Pod" && already && grace != Some(0) && finalizers.is_empty() {
                // Already terminating gracefully: only a zero grace period removes it now.
                return Ok(obj);
            }
            let mark = def.kind == "Namespace" || !finalizers.is_empty() || pod_grace.is_some();
            if dry_run {
                return Ok(obj);
            }
            if !mark {
                match self.st.store.delete(&key, Some(mod_rev)).await {
                    Ok(d) => {
                        obj["metadata"]["resourceVersion"] = json!(d.revision.to_string());
                        return Ok(obj);
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(StoreError::NotFound { .. }) => return Err(self.not_found(name)),
                    Err(e) => return Err(e.into()),
                }
            }
            if already && extra.is_none() {
                if def.kind == "Namespace" {
                    // Picked up again if no pass of this process runs (after a restart).
                    crate::namespaces::spawn_finish(self.st, name);
                }
                return Ok(obj);
            }
            let meta = &mut obj["metadata"];
            if !already {
                let ts = match pod_grace {
                    Some(g) => (chrono::Utc::now() + chrono::Duration::seconds(g))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    None => now_rfc3339(),
                };
                meta["deletionTimestamp"] = json!(ts);
                meta["deletionGracePeriodSeconds"] = json!(pod_grace.unwrap_or(0));
            }
            if !finalizers.is_empty() {
                meta["finalizers"] = json!(finalizers);
            }
            if def.kind == "Namespace" {
                obj["status"]["phase"] = json!("Terminating");
            }
            match self
                .st
                .store
                .update(&key, encode(&obj), mod_rev, None)
                .await
            {
                Ok(rev) => {
                    obj["metadata"]["resourceVersion"] = json!(rev.to_string());
                    if def.kind == "Namespace" {
                        crate::namespaces::spawn_finish(self.st, name);
                    }
                    return Ok(obj);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => return Err(self.not_found(name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(def.group, def.plural, name))
    }

    async fn delete_collection(&self, ns: Option<&str>, r: &Req) -> ApiResult<Response> {
        let labels = LabelSelector::parse(r.q("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(r.q("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let page = self
            .st
            .store
            .list(&resources::prefix(self.def, ns), ListOptions::default())
            .await?;
        let mut items = Vec::new();
        for kv in &page.items {
            let obj = decode(kv)?;
            if !(labels.matches(&obj) && fields.matches(&obj)) {
                continue;
            }
            let name = name_of(&obj);
            let ons = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(String::from);
            match self
                .delete_one(
                    ons.as_deref(),
                    &name,
                    DeleteOpts {
                        policy: r.q("propagationPolicy"),
                        dry_run: r.dry_run(),
                        ..Default::default()
                    },
                )
                .await
            {
                Ok(o) => items.push(o),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        ok(
            json!({"kind": format!("{}List", self.def.kind), "apiVersion": self.def.api_version(), "metadata": {}, "items": items}),
        )
    }

    async fn watch(&self, ns: Option<&str>, r: &Req, name: Option<&str>) -> ApiResult<Response> {
        let labels = LabelSelector::parse(r.q("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let mut fsel = r.q("fieldSelector").unwrap_or("").to_string();
        if let Some(n) = name {
            fsel = if fsel.is_empty() {
                format!("metadata.name={n}")
            } else {
                format!("{fsel},metadata.name={n}")
            };
        }
        let fields = FieldSelector::parse(&fsel).map_err(ApiError::bad_request)?;
        // A watch of everything needs no previous object to tell ADDED from MODIFIED
        // (only whether there was one): it is decoded for deletions alone.
        let everything = labels.is_empty() && fields.is_empty();
        let matches = move |o: &Value| labels.matches(o) && fields.matches(o);
        let rv = r.q("resourceVersion").unwrap_or("0");
        let send_initial = r.q("sendInitialEvents") == Some("true");
        let bookmarks = r.q("allowWatchBookmarks") == Some("true");
        let timeout = r
            .q("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(1800);
        let prefix = resources::prefix(self.def, ns);
        let store = self.st.store.clone();
        let mut initial = Vec::new();
        let start: i64 = if rv == "0" || send_initial {
            let mut opts = ListOptions::default();
            loop {
                let page = store.list(&prefix, opts.clone()).await?;
                for kv in &page.items {
                    let o = decode(kv)?;
                    if matches(&o) {
                        initial.push(o);
                    }
                }
                opts.revision = Some(page.revision);
                match page.continue_key {
                    Some(k) => opts.start_key = Some(k),
                    None => break page.revision,
                }
            }
        } else {
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?
        };
        let kind = self.def.kind;
        let table = r.table;
        let metadata_only = r.metadata_only;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
        let stream = store.watch(&prefix, start).await;
        tokio::spawn(async move {
            let mut first = true;
            let mut emit = |ty: &str, obj: Value| -> bytes::Bytes {
                let obj = if table && ty != "ERROR" && ty != "BOOKMARK" {
                    let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
                    let t = table::table(kind, &[obj], meta, first);
                    first = false;
                    t
                } else if metadata_only && ty != "ERROR" {
                    partial(&obj)
                } else {
                    obj
                };
                let mut line =
                    serde_json::to_vec(&json!({"type": ty, "object": obj})).unwrap_or_default();
                line.push(b'\n');
                line.into()
            };
            for o in initial {
                if tx.send(Ok(emit("ADDED", o))).await.is_err() {
                    return;
                }
            }
            let bookmark = |rev: i64, initial_end: bool| {
                let mut meta = json!({"resourceVersion": rev.to_string()});
                if initial_end {
                    meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                }
                json!({"kind": kind, "apiVersion": "v1", "metadata": meta})
            };
            if send_initial
                && bookmarks
                && tx
                    .send(Ok(emit("BOOKMARK", bookmark(start, true))))
                    .await
                    .is_err()
            {
                return;
            }
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx
                        .send(Ok(emit("ERROR", ApiError::from(e).to_status())))
                        .await;
                    return;
                }
            };
            let deadline = tokio::time::sleep(std::time::Duration::from_secs(timeout));
            tokio::pin!(deadline);
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            tick.tick().await;
            let mut last = start;
            loop {
                let line = tokio::select! {
                    _ = &mut deadline => return,
                    _ = tick.tick() => {
                        if !bookmarks { continue; }
                        emit("BOOKMARK", bookmark(last, false))
                    }
                    ev = stream.next() => match ev {
                        None => return,
                        Some(Err(e)) => {
                            let _ = tx.send(Ok(emit("ERROR", ApiError::from(e).to_status()))).await;
                            return;
                        }
                        Some(Ok(ev)) => {
                            last = ev.revision();
                            let prev = if everything && ev.kind == EventKind::Put {
                                None
                            } else {
                                ev.prev.as_ref().and_then(|kv| decode(kv).ok())
                            };
                            let had_prev = if everything { ev.prev.is_some() } else { prev.is_some() };
                            let prev_match = if everything { had_prev } else { prev.as_ref().is_some_and(&matches) };
                            match ev.kind {
                                EventKind::Put => {
                                    let Ok(o) = decode(&ev.kv) else { continue };
                                    let now = everything || matches(&o);
                                    let ty = match (ev.is_create() || !had_prev, now, prev_match) {
                                        (true, true, _) => "ADDED",
                                        (false, true, true) => "MODIFIED",
                                        (false, true, false) => "ADDED",
                                        (false, false, true) => "DELETED",
                                        _ => continue,
                                    };
                                    emit(ty, o)
                                }
                                EventKind::Delete => {
                                    let Some(mut o) = prev else { continue };
                                    if !prev_match { continue; }
                                    o["metadata"]["resourceVersion"] = json!(ev.revision().to_string());
                                    emit("DELETED", o)
                                }
                            }
                        }
                    }
                };
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
        });
        let body = Body::from_stream(tokio_stream_from(rx));
        Ok((
            StatusCode::OK,
            [
                (http::header::CONTENT_TYPE, "application/json"),
                (http::header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response())
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Creates the namespaces every cluster has, if missing.
pub async fn bootstrap(store: &Arc<dyn Backend>) -> Result<(), StoreError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now_rfc3339(),
                "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        match store
            .create(&format!("/registry/namespaces/{ns}"), encode(&obj), None)
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Work left over from before this start: namespaces left terminating by a server
/// that stopped mid-purge (this one before a restart, or another sharing the store)
/// are finished.
pub async fn resume(st: &Arc<AppState>) -> Result<(), StoreError> {
    let page = st
        .store
        .list("/registry/namespaces/", ListOptions::default())
        .await?;
    for kv in page.items {
        let Ok(ns) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        if ns.pointer("/metadata/deletionTimestamp").is_some()
            || ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
        {
            crate::namespaces::spawn_finish(st, &name_of(&ns));
        } else {
            ensure_default_service_account(&st.store, &name_of(&ns)).await?;
        }
    }
    Ok(())
}

/// The `default` ServiceAccount every namespace has (Kubernetes' serviceaccount
/// controller makes it; here the API server does, on namespace creation and at start).
pub async fn ensure_default_service_account(
    store: &Arc<dyn Backend>,
    ns: &str,
) -> Result<(), StoreError> {
    let key = format!("/registry/serviceaccounts/{ns}/default");
    if store.get(&key, None).await?.kv.is_some() {
        return Ok(());
    }
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": ns, "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": now_rfc3339()}});
    match store.create(&key, encode(&sa), None).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_depth_skips_quotes_and_comments() {
        assert_eq!(flow_depth(b"a: [1, {b: [2]}]\n"), 3);
        assert_eq!(flow_depth(b"a: \"[[[[\"\nb: '{{{' # [[[[\n"), 0);
        assert_eq!(flow_depth(b"a: \"x\\\"[\" \nb: [c]\n"), 1);
        assert_eq!(flow_depth(&b"[".repeat(1000)), 1000);
        let ok = parse_yaml(b"a: {b: [1, 2]}\nc: it's [fine]\n").unwrap();
        assert_eq!(ok["c"], "it's [fine]");
    }
}
