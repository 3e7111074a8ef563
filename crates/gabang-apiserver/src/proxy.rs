//! `pods/log` and `pods/exec`: the pod's node agent serves them (kubelet's port 10250 role,
//! `gabang_agent::server`); this file finds the pod's node and proxies to it.
//!
//! `GET /api/v1/namespaces/{ns}/pods/{name}/log` streams the agent's `/containerLogs` answer
//! back; `GET|POST …/pods/{name}/exec` forwards the websocket upgrade to the agent's `/exec`
//! and, once the agent switches protocols, copies bytes both ways. The agent is reached over
//! TLS without checking its self-signed certificate (like kube-apiserver without
//! `--kubelet-certificate-authority`) and with the server's own admin token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;

use crate::api::AppState;
use crate::status::ApiError;

/// The subresource a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    Log,
    Exec,
}

/// The pod subresource handled here, if the path is one: (namespace, pod, which).
pub fn route(path: &str) -> Option<(String, String, Sub)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name, sub] => {
            let sub = match *sub {
                "log" => Sub::Log,
                "exec" => Sub::Exec,
                _ => return None,
            };
            Some((ns.to_string(), name.to_string(), sub))
        }
        _ => None,
    }
}

/// Query parameters passed on to the agent's `/containerLogs`.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

/// How long connecting to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent may take to answer with headers (exec: after its process started).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn serve(
    st: &AppState,
    ns: &str,
    name: &str,
    sub: Sub,
    req: Request,
) -> Result<Response, ApiError> {
    let method = req.method().clone();
    match (sub, &method) {
        (Sub::Log, &http::Method::GET) => {}
        (Sub::Exec, &http::Method::GET | &http::Method::POST) => {}
        _ => {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not allowed on pods/{}", sub_name(sub)),
            ))
        }
    }
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let q = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let pod = load(st, &format!("/registry/pods/{ns}/{name}"))
        .await?
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let container = pick_container(&pod, name, q("container"))?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let node = load(st, &format!("/registry/nodes/{node_name}"))
        .await?
        .ok_or_else(|| ApiError::not_found("", "nodes", node_name))?;
    let (host, port) = agent_address(&node, node_name)?;

    let uri = {
        let mut out = form_urlencoded::Serializer::new(String::new());
        let path = match sub {
            Sub::Log => {
                for (k, v) in &query {
                    if LOG_PARAMS.contains(&k.as_str()) {
                        out.append_pair(k, v);
                    }
                }
                format!("/containerLogs/{ns}/{name}/{container}")
            }
            Sub::Exec => {
                if !is_websocket(&req) {
                    return Err(ApiError::bad_request(
                    "exec needs a websocket upgrade (subprotocol v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not supported",
                ));
                }
                for (k, v) in &query {
                    if k == "command" {
                        out.append_pair(k, v);
                    }
                }
                for (k, alias) in [
                    ("stdin", "input"),
                    ("stdout", "output"),
                    ("stderr", "error"),
                    ("tty", "tty"),
                ] {
                    if matches!(q(k).or(q(alias)), Some("1" | "true" | "True")) {
                        out.append_pair(k, "1");
                    }
                }
                format!("/exec/{ns}/{name}/{container}")
            }
        };
        let query = out.finish();
        if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        }
    };
    let mut sender = connect(&host, port).await?;
    let mut up = http::Request::builder()
        .method(http::Method::GET)
        .uri(&uri)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::AUTHORIZATION, format!("Bearer {}", st.token));
    if sub == Sub::Exec {
        for h in [
            http::header::CONNECTION,
            http::header::UPGRADE,
            http::header::SEC_WEBSOCKET_KEY,
            http::header::SEC_WEBSOCKET_VERSION,
            http::header::SEC_WEBSOCKET_PROTOCOL,
        ] {
            for v in req.headers().get_all(&h) {
                up = up.header(&h, v.clone());
            }
        }
    }
    let up = up
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(format!("request to node {node_name}: {e}")))?;
    // The response headers come at once (a followed log streams its body, unbounded).
    let resp = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(up))
        .await
        .map_err(|e| unreachable_node(node_name, &e))?
        .map_err(|e| unreachable_node(node_name, &e))?;
    match (sub, resp.status()) {
        (Sub::Log, StatusCode::OK) => {
            let mut r = Response::new(Body::new(resp.into_body()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            Ok(r)
        }
        (Sub::Exec, StatusCode::SWITCHING_PROTOCOLS) => Ok(switch(req, resp)),
        (_, code) => Err(agent_error(code, resp.into_body()).await),
    }
}

fn sub_name(sub: Sub) -> &'static str {
    match sub {
        Sub::Log => "log",
        Sub::Exec => "exec",
    }
}

fn is_websocket(req: &Request) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

async fn load(st: &AppState, key: &str) -> Result<Option<Value>, ApiError> {
    let got = st.store.get(key, None).await?;
    got.kv
        .map(|kv| {
            serde_json::from_slice(&kv.value)
                .map_err(|e| ApiError::internal(format!("stored object {key} is corrupt: {e}")))
        })
        .transpose()
}

fn names_at(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The container the request means, checked against the pod spec (kube-apiserver's messages).
fn pick_container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let app = names_at(pod, "containers");
    let init = names_at(pod, "initContainers");
    let eph = names_at(pod, "ephemeralContainers");
    match asked {
        Some(c) if app.iter().chain(&init).chain(&eph).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if app.len() == 1 => Ok(app[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                app.join(" ")
            );
            if !init.is_empty() {
                msg += &format!(" or one of the init containers: [{}]", init.join(" "));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// The node's agent endpoint: its first InternalIP (else ExternalIP, else Hostname) and
/// `status.daemonEndpoints.kubeletEndpoint.port` (10250 when unset).
fn agent_address(node: &Value, node_name: &str) -> Result<(String, u16), ApiError> {
    let addrs = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|ty| {
            addrs.iter().find_map(|a| {
                (a.get("type").and_then(Value::as_str) == Some(ty))
                    .then(|| a.get("address").and_then(Value::as_str))
                    .flatten()
                    .filter(|s| !s.is_empty())
            })
        })
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "node {node_name} has no address in status.addresses"
            ))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| (1..=65535).contains(p))
        .unwrap_or(10250) as u16;
    Ok((host.to_string(), port))
}

fn unreachable_node(node: &str, e: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(
        502,
        "ServiceUnavailable",
        format!("error talking to the agent of node {node}: {e}"),
    )
}

/// A TLS + HTTP/1.1 connection to an agent; the connection task allows upgrades.
async fn connect(
    host: &str,
    port: u16,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, ApiError> {
    let fail = |e: &dyn std::fmt::Display| unreachable_node(&format!("{host}:{port}"), e);
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|e| fail(&e))?
    .map_err(|e| fail(&e))?;
    let _ = tcp.set_nodelay(true);
    let name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string()).map_err(|e| fail(&e))?,
    };
    // A node that accepts TCP and then stalls must not hold the request forever.
    let tls = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(agent_tls()?).connect(name, tcp),
    )
    .await
    .map_err(|e| fail(&e))?
    .map_err(|e| fail(&e))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| fail(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("agent connection: {e}");
        }
    });
    Ok(sender)
}

/// Client TLS config that accepts the agent's self-signed certificate; made once, so its
/// session cache lets later connections resume.
fn agent_tls() -> Result<Arc<rustls::ClientConfig>, ApiError> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let mut cfg = gabang_tls::any_cert_client_config()
        .map_err(|e| ApiError::internal(format!("agent TLS: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(CONFIG.get_or_init(|| Arc::new(cfg)).clone())
}

/// Answers the client's upgrade with the agent's 101 and joins the two upgraded streams.
fn switch(mut req: Request, mut resp: http::Response<hyper::body::Incoming>) -> Response {
    let client_up = hyper::upgrade::on(&mut req);
    let agent_up = hyper::upgrade::on(&mut resp);
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for h in [
        http::header::CONNECTION,
        http::header::UPGRADE,
        http::header::SEC_WEBSOCKET_ACCEPT,
        http::header::SEC_WEBSOCKET_PROTOCOL,
    ] {
        if let Some(v) = resp.headers().get(&h) {
            out.headers_mut().insert(h, v.clone());
        }
    }
    tokio::spawn(async move {
        let (client, agent) = match tokio::try_join!(client_up, agent_up) {
            Ok(both) => both,
            Err(e) => {
                tracing::warn!("exec upgrade: {e}");
                return;
            }
        };
        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(agent))
            .await;
    });
    out
}

/// An agent's error answer (plain text, like kubelet's) as a `Status`.
async fn agent_error(code: StatusCode, body: hyper::body::Incoming) -> ApiError {
    let text = match http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
    {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
        Err(e) => format!("(reading the agent's answer: {e})"),
    };
    let reason = match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    ApiError::new(code.as_u16(), reason, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_and_containers() {
        assert_eq!(
            route("/api/v1/namespaces/d/pods/p/log"),
            Some(("d".into(), "p".into(), Sub::Log))
        );
        assert_eq!(route("/api/v1/namespaces/d/pods/p/status"), None);
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(pick_container(&pod, "p", Some("i")).unwrap(), "i");
        let e = pick_container(&pod, "p", None).unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        let e = pick_container(&pod, "p", Some("x")).unwrap_err();
        assert_eq!(e.message, "container x is not valid for pod p");
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10999}}}});
        assert_eq!(
            agent_address(&node, "n1").unwrap(),
            ("10.0.0.2".into(), 10999)
        );
    }
}
