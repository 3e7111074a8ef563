//! Liveness, readiness and startup probes: how one probe runs ([`run_probe`]: exec, httpGet,
//! tcpSocket, grpc is reported unsupported) and the per-probe state machine ([`ProbeState`]:
//! `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`, `successThreshold`,
//! `failureThreshold`, Kubernetes' defaults). Clocks are `Instant`s passed in, so tests drive
//! time.
//!
//! httpGet and tcpSocket are plain `std::net` (connect with a timeout, a minimal HTTP/1.1
//! GET, every read bounded by the probe's deadline), like the kubelet: status 200–399 is
//! success, redirects to the same host are followed (at most 10), a redirect elsewhere counts
//! as success. HTTPS probes use rustls without verifying the certificate, as the kubelet
//! does (`InsecureSkipVerify`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    /// With the message kubectl describe shows (`HTTP probe failed with statuscode: 500`).
    Failure(String),
}

/// Runs an exec probe's command in the container (the runtime's exec, or a fake).
pub trait ProbeExec {
    /// Exit code of `argv`, or an error message; must give up after `timeout`.
    fn exec(&self, argv: &[String], timeout: Duration) -> Result<i32, String>;
}

/// Kubernetes' probe defaults.
pub const DEFAULT_PERIOD_SECONDS: u64 = 10;
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 1;
pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// Redirects followed by an httpGet probe (Go's http client default).
const MAX_REDIRECTS: usize = 10;
/// The most response-header bytes an httpGet probe reads.
const MAX_HEAD: usize = 16 * 1024;

/// A positive field with its default (0 and negatives mean "unset", as the API defaults them).
fn positive(v: Option<i32>, default: u64) -> u64 {
    match v {
        Some(n) if n > 0 => n as u64,
        _ => default,
    }
}

/// `timeoutSeconds` of `probe` (default 1 s).
pub fn probe_timeout(probe: &Probe) -> Duration {
    Duration::from_secs(positive(probe.timeout_seconds, DEFAULT_TIMEOUT_SECONDS))
}

/// Run `probe` once against a container of a pod at `pod_ip` (named ports resolved through
/// `container.ports`); never blocks longer than `timeoutSeconds` (default 1 s).
pub fn run_probe(
    probe: &Probe,
    container: &Container,
    pod_ip: Ipv4Addr,
    exec: &dyn ProbeExec,
) -> ProbeResult {
    let timeout = probe_timeout(probe);
    if let Some(action) = &probe.exec {
        let argv = action.command.clone().unwrap_or_default();
        if argv.is_empty() {
            return ProbeResult::Failure("exec probe has no command".into());
        }
        return match exec.exec(&argv, timeout) {
            Ok(0) => ProbeResult::Success,
            Ok(code) => ProbeResult::Failure(format!(
                "command {:?} exited with code {code}",
                argv.join(" ")
            )),
            Err(msg) => ProbeResult::Failure(msg),
        };
    }
    if let Some(action) = &probe.http_get {
        return http_probe(action, container, pod_ip, timeout);
    }
    if let Some(action) = &probe.tcp_socket {
        let port = match resolve_port(&action.port, container) {
            Ok(p) => p,
            Err(msg) => return ProbeResult::Failure(msg),
        };
        let host = host_or(action.host.as_deref(), pod_ip);
        let deadline = Instant::now() + timeout;
        return match connect(&host, port, deadline) {
            Ok(_) => ProbeResult::Success,
            Err(msg) => ProbeResult::Failure(msg),
        };
    }
    if probe.grpc.is_some() {
        return ProbeResult::Failure("grpc probes are not supported".into());
    }
    ProbeResult::Failure("probe has no handler (exec, httpGet, tcpSocket)".into())
}

fn host_or(host: Option<&str>, pod_ip: Ipv4Addr) -> String {
    match host.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => h.to_string(),
        None => pod_ip.to_string(),
    }
}

/// A probe's port: a number, or the name of one of the container's ports (a numeric string
/// is taken as a number, like the kubelet does).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            let named = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port);
            match named.or_else(|| name.parse().ok()) {
                Some(n) => n,
                None => {
                    return Err(format!(
                        "couldn't find port {name:?} in container {:?}",
                        container.name
                    ))
                }
            }
        }
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid port number: {n}"))
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// Connects to `host:port` before `deadline`; errors read like Go's (`dial tcp …: …`).
fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let hp = host_port(host, port);
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Err(format!("dial tcp {hp}: lookup {host}: {e}")),
    };
    let mut last = format!("dial tcp {hp}: no address");
    for addr in addrs {
        let Some(left) = remaining(deadline) else {
            return Err(format!("dial tcp {hp}: i/o timeout"));
        };
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = format!("dial tcp {addr}: i/o timeout");
            }
            Err(e) => last = format!("dial tcp {addr}: connect: {e}"),
        }
    }
    Err(last)
}

/// What one HTTP exchange returned.
struct HttpReply {
    status: u16,
    location: Option<String>,
}

fn http_probe(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: Ipv4Addr,
    timeout: Duration,
) -> ProbeResult {
    let tls = match action.scheme.as_deref().unwrap_or("HTTP") {
        s if s.eq_ignore_ascii_case("HTTP") => false,
        s if s.eq_ignore_ascii_case("HTTPS") => true,
        other => return ProbeResult::Failure(format!("unsupported scheme {other:?}")),
    };
    let scheme = if tls { "https" } else { "http" };
    let port = match resolve_port(&action.port, container) {
        Ok(p) => p,
        Err(msg) => return ProbeResult::Failure(msg),
    };
    let host = host_or(action.host.as_deref(), pod_ip);
    let mut path = action.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let headers: Vec<(String, String)> = action
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    let deadline = Instant::now() + timeout;
    let origin = host_port(&host, port);
    for _ in 0..=MAX_REDIRECTS {
        let url = format!("{scheme}://{origin}{path}");
        let reply = match http_get(&host, port, tls, &path, &headers, deadline) {
            Ok(r) => r,
            Err(msg) => return ProbeResult::Failure(format!("Get \"{url}\": {msg}")),
        };
        if !(200..400).contains(&reply.status) {
            return ProbeResult::Failure(format!(
                "HTTP probe failed with statuscode: {}",
                reply.status
            ));
        }
        let next = match (reply.status, reply.location) {
            (300..=399, Some(loc)) => redirect_path(&loc, scheme, &origin),
            _ => None,
        };
        match next {
            Some(p) => path = p,
            // 2xx, a 3xx without a usable Location, or a redirect to another host (the
            // kubelet reports that as success with a warning).
            None => return ProbeResult::Success,
        }
    }
    ProbeResult::Failure(format!("stopped after {MAX_REDIRECTS} redirects"))
}

/// The path to follow for a redirect to the same origin; `None` for another host.
fn redirect_path(location: &str, scheme: &str, origin: &str) -> Option<String> {
    if location.starts_with('/') && !location.starts_with("//") {
        return Some(location.to_string());
    }
    let rest = location
        .get(..scheme.len() + 3)
        .filter(|p| p.eq_ignore_ascii_case(&format!("{scheme}://")))
        .map(|p| &location[p.len()..])?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let same = authority == origin || format!("{authority}:{default_port}") == origin;
    same.then(|| path.to_string())
}

/// A probe connection: plain TCP or TLS over it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// The TLS client config of HTTPS probes (built once).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            gabang_tls::any_cert_client_config()
                .map(Arc::new)
                .map_err(|e| format!("tls: {e}"))
        })
        .clone()
}

/// One `GET` over a fresh connection; reads the status line and headers before `deadline`.
fn http_get(
    host: &str,
    port: u16,
    tls: bool,
    path: &str,
    headers: &[(String, String)],
    deadline: Instant,
) -> Result<HttpReply, String> {
    let tcp = connect(host, port, deadline)?;
    let mut stream = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("tls: server name {host:?}: {e}"))?;
        let conn =
            rustls::ClientConnection::new(tls_config()?, name).map_err(|e| format!("tls: {e}"))?;
        Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
    } else {
        Conn::Plain(tcp)
    };
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("Host") {
        req.push_str(&format!("Host: {}\r\n", host_port(host, port)));
    }
    if !has("User-Agent") {
        req.push_str("User-Agent: kube-probe/1.32\r\n");
    }
    if !has("Accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        // A header cannot carry a line break; drop such values rather than split the request.
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            continue;
        }
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");

    let timed_out = || "timeout awaiting response headers".to_string();
    let left = remaining(deadline).ok_or_else(timed_out)?;
    let tcp = stream.tcp();
    tcp.set_write_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    // The TLS handshake reads too: bound it by the deadline as well.
    tcp.set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(req.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => timed_out(),
            _ => format!("write: {e}"),
        })?;

    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        if let Some(end) = find_head_end(&head) {
            head.truncate(end);
            break;
        }
        if head.len() > MAX_HEAD {
            return Err("response headers too long".into());
        }
        let left = remaining(deadline).ok_or_else(timed_out)?;
        stream
            .tcp()
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => {
                if head.is_empty() {
                    return Err("EOF".into());
                }
                break;
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out())
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    parse_head(&head)
}

fn find_head_end(data: &[u8]) -> Option<usize> {
    data.windows(4).position(|w| w == b"\r\n\r\n")
}

fn parse_head(head: &[u8]) -> Result<HttpReply, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") {
        return Err(format!("malformed HTTP response {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..1000).contains(c))
        .ok_or_else(|| format!("malformed HTTP status code {code:?}"))?;
    let location = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    Ok(HttpReply { status, location })
}

/// What a recorded result changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The probe's verdict flipped to healthy (readiness: Ready; startup: started).
    BecameHealthy,
    /// The verdict flipped to unhealthy (liveness/startup: restart the container; readiness:
    /// not Ready), with the last failure's message.
    BecameUnhealthy(String),
}

/// One probe of one container attempt.
#[derive(Debug, Clone)]
pub struct ProbeState {
    pub kind: ProbeKind,
    /// When the container started (`initialDelaySeconds` counts from here).
    started: Instant,
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    /// `Some(true)` healthy, `Some(false)` unhealthy, `None` not decided yet (startup).
    verdict: Option<bool>,
    successes: u32,
    failures: u32,
    last_run: Option<Instant>,
}

impl ProbeState {
    /// A probe for a container that started at `started`. Liveness starts healthy; readiness
    /// and startup start unhealthy.
    pub fn new(kind: ProbeKind, probe: &Probe, started: Instant) -> Self {
        let initial_delay =
            Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        // Liveness and startup probes must have successThreshold 1.
        let success_threshold = match kind {
            ProbeKind::Readiness => {
                positive(probe.success_threshold, DEFAULT_SUCCESS_THRESHOLD as u64) as u32
            }
            ProbeKind::Liveness | ProbeKind::Startup => 1,
        };
        Self {
            kind,
            started,
            initial_delay,
            period: Duration::from_secs(positive(probe.period_seconds, DEFAULT_PERIOD_SECONDS)),
            timeout: probe_timeout(probe),
            success_threshold,
            failure_threshold: positive(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD as u64)
                as u32,
            verdict: match kind {
                ProbeKind::Liveness => Some(true),
                ProbeKind::Readiness => Some(false),
                ProbeKind::Startup => None,
            },
            successes: 0,
            failures: 0,
            last_run: None,
        }
    }
    /// Is a run due at `now`?
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_due()
    }
    /// When the next run is due: `initialDelaySeconds` after the start, then every
    /// `periodSeconds` after the last run.
    pub fn next_due(&self) -> Instant {
        match self.last_run {
            None => self.started + self.initial_delay,
            Some(t) => t + self.period,
        }
    }
    /// Record a run's result at `now` (thresholds applied).
    pub fn record(&mut self, now: Instant, result: ProbeResult) -> Option<Transition> {
        self.last_run = Some(now);
        match result {
            ProbeResult::Success => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.verdict != Some(true) && self.successes >= self.success_threshold {
                    self.verdict = Some(true);
                    return Some(Transition::BecameHealthy);
                }
            }
            ProbeResult::Failure(msg) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.verdict != Some(false) && self.failures >= self.failure_threshold {
                    self.verdict = Some(false);
                    return Some(Transition::BecameUnhealthy(msg));
                }
            }
        }
        None
    }
    pub fn healthy(&self) -> bool {
        self.verdict == Some(true)
    }
    /// `timeoutSeconds` as a duration.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// `periodSeconds` as a duration.
    pub fn period(&self) -> Duration {
        self.period
    }
}
