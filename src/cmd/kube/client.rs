//! The API client of `gabang apply/get/describe/delete/scale/logs`: kubeconfig loading,
//! a blocking HTTPS client, Kubernetes `Status` errors and discovery (`/api`, `/apis`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Where the kubeconfig comes from: `--kubeconfig`, else `$KUBECONFIG` (the first file of
/// the list that exists), else `ROOT/cluster/admin.kubeconfig`.
pub fn kubeconfig_path(flag: Option<&Path>, root: &Path) -> Result<PathBuf> {
    if let Some(p) = flag {
        if !p.exists() {
            bail!("kubeconfig {} (--kubeconfig) does not exist", p.display());
        }
        return Ok(p.to_path_buf());
    }
    if let Some(env) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let list: Vec<PathBuf> = std::env::split_paths(&env)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if let Some(p) = list.iter().find(|p| p.exists()) {
            return Ok(p.clone());
        }
        bail!(
            "no kubeconfig: none of $KUBECONFIG ({}) exists",
            env.to_string_lossy()
        );
    }
    let p = root.join("cluster/admin.kubeconfig");
    if !p.exists() {
        bail!(
            "no kubeconfig: {} does not exist (start a cluster with `gabang server` or `gabang up`, \
             or give --kubeconfig FILE or $KUBECONFIG)",
            p.display()
        );
    }
    Ok(p)
}

/// What a kubeconfig's context says about reaching the cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KubeConfig {
    pub path: PathBuf,
    pub server: String,
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    pub token: Option<String>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    pub basic_auth: Option<(String, String)>,
    pub namespace: Option<String>,
}

fn yget<'a>(v: &'a serde_yaml::Value, key: &str) -> Option<&'a serde_yaml::Value> {
    v.as_mapping()?
        .get(serde_yaml::Value::String(key.to_string()))
}

fn ystr(v: &serde_yaml::Value, key: &str) -> Option<String> {
    yget(v, key)
        .and_then(serde_yaml::Value::as_str)
        .map(String::from)
        .filter(|s| !s.is_empty())
}

/// The entry named `name` of the list `key` (`clusters`, `users`, `contexts`), its inner
/// object (`cluster`, `user`, `context`); without a name, the first entry.
fn named<'a>(
    doc: &'a serde_yaml::Value,
    key: &str,
    inner: &str,
    name: Option<&str>,
) -> Option<&'a serde_yaml::Value> {
    let list = yget(doc, key)?.as_sequence()?;
    let entry = match name {
        Some(n) => list
            .iter()
            .find(|e| yget(e, "name").and_then(serde_yaml::Value::as_str) == Some(n))?,
        None => list.first()?,
    };
    yget(entry, inner)
}

impl KubeConfig {
    /// Reads the kubeconfig at `path` for `context` (default: its current-context).
    pub fn load(path: &Path, context: Option<&str>) -> Result<KubeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        Self::parse(&text, path, context)
    }

    pub fn parse(text: &str, path: &Path, context: Option<&str>) -> Result<KubeConfig> {
        use base64::Engine;
        let where_ = path.display();
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).with_context(|| format!("kubeconfig {where_}"))?;
        let ctx_name = context
            .map(String::from)
            .or_else(|| ystr(&doc, "current-context"));
        let ctx = match &ctx_name {
            Some(n) => Some(
                named(&doc, "contexts", "context", Some(n))
                    .ok_or_else(|| anyhow!("kubeconfig {where_}: no context {n:?}"))?,
            ),
            None => None,
        };
        let cluster_name = ctx.and_then(|c| ystr(c, "cluster"));
        let user_name = ctx.and_then(|c| ystr(c, "user"));
        let cluster = named(&doc, "clusters", "cluster", cluster_name.as_deref())
            .ok_or_else(|| anyhow!("kubeconfig {where_}: no cluster"))?;
        let user = named(&doc, "users", "user", user_name.as_deref());
        let server = ystr(cluster, "server")
            .ok_or_else(|| anyhow!("kubeconfig {where_}: the cluster has no server"))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let b64 = |field: &str, v: String| -> Result<Vec<u8>> {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim().as_bytes())
                .with_context(|| format!("kubeconfig {where_}: {field} is not base64"))
        };
        let file = |field: &str, f: String| -> Result<Vec<u8>> {
            let p = base.join(f);
            std::fs::read(&p)
                .with_context(|| format!("kubeconfig {where_}: {field}: reading {}", p.display()))
        };
        let data_or_file = |obj: &serde_yaml::Value, key: &str| -> Result<Option<Vec<u8>>> {
            let data_key = format!("{key}-data");
            if let Some(d) = ystr(obj, &data_key) {
                return b64(&data_key, d).map(Some);
            }
            match ystr(obj, key) {
                Some(f) => file(key, f).map(Some),
                None => Ok(None),
            }
        };
        let mut kc = KubeConfig {
            path: path.to_path_buf(),
            server: server.trim_end_matches('/').to_string(),
            ca_pem: data_or_file(cluster, "certificate-authority")?,
            insecure: yget(cluster, "insecure-skip-tls-verify")
                .and_then(serde_yaml::Value::as_bool)
                .unwrap_or(false),
            namespace: ctx.and_then(|c| ystr(c, "namespace")),
            ..Default::default()
        };
        if let Some(u) = user {
            kc.token = match ystr(u, "token") {
                Some(t) => Some(t),
                None => match ystr(u, "tokenFile") {
                    Some(f) => Some(
                        String::from_utf8_lossy(&file("tokenFile", f)?)
                            .trim()
                            .into(),
                    ),
                    None => None,
                },
            };
            kc.client_cert_pem = data_or_file(u, "client-certificate")?;
            kc.client_key_pem = data_or_file(u, "client-key")?;
            if let (Some(n), Some(p)) = (ystr(u, "username"), ystr(u, "password")) {
                kc.basic_auth = Some((n, p));
            }
        }
        Ok(kc)
    }
}

/// A failed API call as the server's `Status` says it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Value,
    /// What was being done (`error when applying "f.yaml": `), printed before the message.
    pub context: String,
}

impl StatusError {
    /// From an error response body (a `Status`, or anything else).
    pub fn from_response(code: u16, body: &[u8]) -> StatusError {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if v["kind"] == "Status" || v["message"].is_string() {
            return StatusError {
                code,
                reason: v["reason"].as_str().unwrap_or("").to_string(),
                message: v["message"].as_str().unwrap_or("").to_string(),
                details: v["details"].clone(),
                context: String::new(),
            };
        }
        let text = String::from_utf8_lossy(body).trim().to_string();
        let (reason, message) = match code {
            404 => (
                "NotFound",
                "the server could not find the requested resource",
            ),
            401 => (
                "Unauthorized",
                "the server has asked for the client to provide credentials",
            ),
            403 => ("Forbidden", "forbidden"),
            _ => ("", ""),
        };
        StatusError {
            code,
            reason: reason.into(),
            message: if text.is_empty() || !message.is_empty() {
                if message.is_empty() {
                    format!("HTTP {code}")
                } else {
                    message.into()
                }
            } else {
                text
            },
            details: Value::Null,
            context: String::new(),
        }
    }

    /// The same error, its message prefixed (`error when applying "f.yaml": …`).
    pub fn context(mut self, prefix: &str) -> StatusError {
        self.context = format!("{prefix}: ");
        self
    }

    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }
}

impl std::fmt::Display for StatusError {
    /// As kubectl prints it: `Error from server (NotFound): pods "x" not found`, and
    /// `The Deployment "web" is invalid: …` with one line per cause.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reason == "Invalid" {
            if let (Some(kind), Some(name)) =
                (self.details["kind"].as_str(), self.details["name"].as_str())
            {
                let causes: Vec<String> = self.details["causes"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .map(|c| {
                                let field = c["field"].as_str().unwrap_or("");
                                let msg = c["message"].as_str().unwrap_or("");
                                if field.is_empty() {
                                    msg.to_string()
                                } else {
                                    format!("{field}: {msg}")
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let lead = &self.context;
                return match causes.len() {
                    0 => write!(f, "{lead}The {kind} {name:?} is invalid"),
                    1 => write!(f, "{lead}The {kind} {name:?} is invalid: {}", causes[0]),
                    _ => {
                        write!(f, "{lead}The {kind} {name:?} is invalid: ")?;
                        for c in causes {
                            write!(f, "\n* {c}")?;
                        }
                        Ok(())
                    }
                };
            }
        }
        if self.reason.is_empty() || self.reason == "Unknown" {
            write!(f, "Error from server: {}{}", self.context, self.message)
        } else {
            write!(
                f,
                "Error from server ({}): {}{}",
                self.reason, self.context, self.message
            )
        }
    }
}

impl std::error::Error for StatusError {}

/// The cluster could not be reached (connection refused, TLS, DNS).
#[derive(Debug)]
pub struct Unreachable {
    pub server: String,
    pub kubeconfig: PathBuf,
    pub detail: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot reach the API server at {} (kubeconfig {}): {}",
            self.server,
            self.kubeconfig.display(),
            self.detail
        )
    }
}

impl std::error::Error for Unreachable {}

/// The innermost cause of a reqwest error (`connection refused`, a TLS alert).
fn root_cause(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

/// Accept header asking for a `meta.k8s.io/v1 Table` (what kubectl sends for `get`).
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// A blocking client of one API server.
pub struct Client {
    http: reqwest::blocking::Client,
    kc: KubeConfig,
    /// The namespace of the kubeconfig's context, else `default`.
    pub namespace: String,
}

/// Percent-encodes a query value (shared with the controllers' client).
pub use gabang_controllers::http::encode_query;

impl Client {
    pub fn new(kc: KubeConfig) -> Result<Client> {
        let mut b = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("gabang/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // Watches and `logs -f` stay open; plain requests set their own timeout.
            .timeout(None::<Duration>);
        if let Some(ca) = &kc.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca).with_context(|| {
                format!(
                    "kubeconfig {}: certificate-authority is not PEM",
                    kc.path.display()
                )
            })?;
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if kc.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        if let (Some(cert), Some(key)) = (&kc.client_cert_pem, &kc.client_key_pem) {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let id = reqwest::Identity::from_pem(&pem).with_context(|| {
                format!("kubeconfig {}: client certificate/key", kc.path.display())
            })?;
            b = b.identity(id);
        }
        let http = b.build().context("building the HTTPS client")?;
        Ok(Client {
            http,
            namespace: kc.namespace.clone().unwrap_or_else(|| "default".into()),
            kc,
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        anyhow::Error::new(Unreachable {
            server: self.kc.server.clone(),
            kubeconfig: self.kc.path.clone(),
            detail: root_cause(e),
        })
    }

    /// Sends one request; a non-2xx answer becomes a [`StatusError`]. `timeout: None`
    /// for streams (watch, follow).
    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        accept: &str,
        body: Option<(&str, Vec<u8>)>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::blocking::Response> {
        let url = format!("{}{path}", self.kc.server);
        let mut rb = self.http.request(method, &url).header("Accept", accept);
        if let Some(t) = timeout {
            rb = rb.timeout(t);
        }
        if let Some(t) = &self.kc.token {
            rb = rb.bearer_auth(t);
        } else if let Some((u, p)) = &self.kc.basic_auth {
            rb = rb.basic_auth(u, Some(p));
        }
        if let Some((ctype, bytes)) = body {
            rb = rb.header("Content-Type", ctype).body(bytes);
        }
        let resp = rb.send().map_err(|e| self.unreachable(&e))?;
        let code = resp.status().as_u16();
        if (200..300).contains(&code) {
            return Ok(resp);
        }
        let bytes = resp.bytes().map_err(|e| self.unreachable(&e))?;
        Err(StatusError::from_response(code, &bytes).into())
    }

    /// A request answered with JSON.
    pub fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        accept: &str,
        body: Option<(&str, &Value)>,
    ) -> Result<Value> {
        let body = match body {
            Some((ctype, v)) => Some((ctype, serde_json::to_vec(v)?)),
            None => None,
        };
        let resp = self.send(method, path, accept, body, Some(Duration::from_secs(60)))?;
        let bytes = resp.bytes().map_err(|e| self.unreachable(&e))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{path}: the server's answer is not JSON"))
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.json(reqwest::Method::GET, path, "application/json", None)
    }
}

/// A served resource, from discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    /// From the group's preferred version.
    pub preferred: bool,
}

impl ApiResource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pod`, `deployment.apps`: how kubectl names the type in its messages.
    pub fn qualified(&self) -> String {
        let k = self.kind.to_lowercase();
        if self.group.is_empty() {
            k
        } else {
            format!("{k}.{}", self.group)
        }
    }

    /// The collection path (`ns: None` = all namespaces, or a cluster-scoped resource),
    /// with `/NAME` when given.
    pub fn path(&self, ns: Option<&str>, name: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let (true, Some(ns)) = (self.namespaced, ns) {
            p.push_str(&format!("/namespaces/{ns}"));
        }
        p.push('/');
        p.push_str(&self.plural);
        if let Some(n) = name {
            p.push('/');
            p.push_str(n);
        }
        p
    }
}

/// What the server serves, from `/api` and `/apis`.
pub struct Discovery {
    pub resources: Vec<ApiResource>,
}

fn resources_of(list: &Value, group: &str, version: &str, preferred: bool) -> Vec<ApiResource> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    list["resources"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            let plural = r["name"].as_str()?;
            if plural.contains('/') {
                return None;
            }
            let kind = r["kind"].as_str()?.to_string();
            let singular = r["singularName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(String::from)
                .unwrap_or_else(|| kind.to_lowercase());
            Some(ApiResource {
                group: group.to_string(),
                version: version.to_string(),
                kind,
                plural: plural.to_string(),
                singular,
                namespaced: r["namespaced"].as_bool().unwrap_or(false),
                short_names: strings(&r["shortNames"]),
                categories: strings(&r["categories"]),
                verbs: strings(&r["verbs"]),
                preferred,
            })
        })
        .collect()
}

impl Discovery {
    pub fn load(c: &Client) -> Result<Discovery> {
        let mut resources = Vec::new();
        let core = c.get("/api")?;
        for v in core["versions"].as_array().cloned().unwrap_or_default() {
            let Some(v) = v.as_str() else { continue };
            let list = c.get(&format!("/api/{v}"))?;
            resources.extend(resources_of(&list, "", v, true));
        }
        let groups = c.get("/apis")?;
        for g in groups["groups"].as_array().cloned().unwrap_or_default() {
            let Some(name) = g["name"].as_str() else {
                continue;
            };
            let preferred = g["preferredVersion"]["version"].as_str().unwrap_or("");
            for v in g["versions"].as_array().cloned().unwrap_or_default() {
                let Some(version) = v["version"].as_str() else {
                    continue;
                };
                let list = match c.get(&format!("/apis/{name}/{version}")) {
                    Ok(l) => l,
                    Err(e) if e.downcast_ref::<StatusError>().is_some() => continue,
                    Err(e) => return Err(e),
                };
                resources.extend(resources_of(&list, name, version, version == preferred));
            }
        }
        Ok(Discovery { resources })
    }

    /// The resource a kubectl-style type name means: plural, singular, short name or kind
    /// (any case), optionally qualified by group (`deployments.apps`) or version and
    /// group (`deployments.v1.apps`).
    pub fn resolve(&self, name: &str) -> Result<&ApiResource> {
        let lower = name.to_lowercase();
        let matches = |r: &ApiResource, n: &str| {
            r.plural == n
                || r.singular == n
                || r.kind.to_lowercase() == n
                || r.short_names.iter().any(|s| s == n)
        };
        // Exact names before short names, preferred versions first (kubectl's order).
        fn pick(cands: Vec<&ApiResource>) -> Option<&ApiResource> {
            cands
                .iter()
                .find(|r| r.preferred)
                .or(cands.first())
                .copied()
        }
        let direct: Vec<&ApiResource> = self
            .resources
            .iter()
            .filter(|r| matches(r, &lower))
            .collect();
        if let Some(r) = pick(direct) {
            return Ok(r);
        }
        if let Some((res, rest)) = lower.split_once('.') {
            let qualified: Vec<&ApiResource> = self
                .resources
                .iter()
                .filter(|r| {
                    matches(r, res)
                        && (r.group == rest
                            || rest
                                .split_once('.')
                                .is_some_and(|(v, g)| r.version == v && r.group == g))
                })
                .collect();
            if let Some(r) = pick(qualified) {
                return Ok(r);
            }
        }
        bail!("the server doesn't have a resource type {name:?}")
    }

    /// The resources of a category (`all`).
    pub fn category(&self, name: &str) -> Vec<&ApiResource> {
        self.resources
            .iter()
            .filter(|r| r.preferred && r.categories.iter().any(|c| c == name))
            .collect()
    }

    /// The resource of a manifest's `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Result<&ApiResource> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .ok_or_else(|| {
                anyhow!(
                    "resource mapping not found for kind {kind:?} in version {api_version:?}: \
                     no matches for kind {kind:?} in version {api_version:?} (is the apiVersion right?)"
                )
            })
    }
}

/// A `DeleteOptions` body.
pub fn delete_options(propagation: Option<&str>, grace: Option<i64>) -> Value {
    let mut o = json!({"apiVersion": "v1", "kind": "DeleteOptions"});
    if let Some(p) = propagation {
        o["propagationPolicy"] = json!(p);
    }
    if let Some(g) = grace {
        o["gracePeriodSeconds"] = json!(g);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster:\n    server: https://10.0.0.1:6443\n- name: gabang\n  cluster:\n    server: https://127.0.0.1:6443/\n    certificate-authority-data: aGVsbG8=\nusers:\n- name: admin\n  user:\n    token: t0k\ncontexts:\n- name: other\n  context:\n    cluster: a\n    user: admin\n- name: gabang\n  context:\n    cluster: gabang\n    user: admin\n    namespace: shop\ncurrent-context: gabang\n";

    #[test]
    fn kubeconfig_follows_the_current_context() {
        let kc = KubeConfig::parse(KC, Path::new("/x/kc"), None).unwrap();
        assert_eq!(kc.server, "https://127.0.0.1:6443");
        assert_eq!(kc.ca_pem.as_deref(), Some(&b"hello"[..]));
        assert_eq!(kc.token.as_deref(), Some("t0k"));
        assert_eq!(kc.namespace.as_deref(), Some("shop"));
        let other = KubeConfig::parse(KC, Path::new("/x/kc"), Some("other")).unwrap();
        assert_eq!(other.server, "https://10.0.0.1:6443");
        assert_eq!(other.namespace, None);
        let e = KubeConfig::parse(KC, Path::new("/x/kc"), Some("nope")).unwrap_err();
        assert!(e.to_string().contains("no context \"nope\""), "{e}");
    }

    #[test]
    fn kubeconfig_errors_name_the_file() {
        let e = KubeConfig::parse("clusters: [", Path::new("/x/kc"), None).unwrap_err();
        assert!(format!("{e:#}").contains("kubeconfig /x/kc"), "{e:#}");
        let e = KubeConfig::parse("clusters: []\n", Path::new("/x/kc"), None).unwrap_err();
        assert!(e.to_string().contains("no cluster"), "{e}");
    }

    #[test]
    fn status_errors_print_like_kubectl() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"x\" not found","reason":"NotFound","code":404}"#;
        let e = StatusError::from_response(404, body);
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): pods \"x\" not found"
        );
        let e = StatusError::from_response(500, b"boom");
        assert_eq!(e.to_string(), "Error from server: boom");
        let body = br#"{"kind":"Status","message":"Deployment.apps \"web\" is invalid: spec.replicas: must be >= 0","reason":"Invalid","code":422,"details":{"name":"web","kind":"Deployment","causes":[{"field":"spec.replicas","message":"must be >= 0"}]}}"#;
        let e = StatusError::from_response(422, body).context("error when applying \"d.yaml\"");
        assert_eq!(
            e.to_string(),
            "error when applying \"d.yaml\": The Deployment \"web\" is invalid: spec.replicas: must be >= 0"
        );
    }

    fn disco() -> Discovery {
        let core = json!({"resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "shortNames": ["po"], "categories": ["all"]},
            {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod"},
            {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "shortNames": ["no"]},
        ]});
        let apps = json!({"resources": [
            {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "shortNames": ["deploy"], "categories": ["all"]},
        ]});
        let mut resources = resources_of(&core, "", "v1", true);
        resources.extend(resources_of(&apps, "apps", "v1", true));
        Discovery { resources }
    }

    #[test]
    fn type_names_resolve_like_kubectl() {
        let d = disco();
        for n in ["po", "pod", "pods", "Pod", "PODS"] {
            assert_eq!(d.resolve(n).unwrap().plural, "pods", "{n}");
        }
        for n in ["deploy", "deployments.apps", "deployment.v1.apps"] {
            assert_eq!(d.resolve(n).unwrap().qualified(), "deployment.apps", "{n}");
        }
        assert_eq!(
            d.resolve("foo").unwrap_err().to_string(),
            "the server doesn't have a resource type \"foo\""
        );
        assert!(d.resolve("pods/log").is_err());
        let all: Vec<&str> = d
            .category("all")
            .iter()
            .map(|r| r.plural.as_str())
            .collect();
        assert_eq!(all, ["pods", "deployments"]);
        let dep = d.by_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(
            dep.path(Some("shop"), Some("web")),
            "/apis/apps/v1/namespaces/shop/deployments/web"
        );
        let node = d.by_kind("v1", "Node").unwrap();
        assert_eq!(node.path(Some("shop"), None), "/api/v1/nodes");
        assert!(d.by_kind("apps/v2", "Deployment").is_err());
    }
}
