//! Probes against real loopback servers the tests start, a fake exec, and the probe state
//! machine driven with made-up instants.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gabang_agent::probe::{run_probe, ProbeExec, ProbeKind, ProbeResult, ProbeState, Transition};
use k8s_openapi::api::core::v1::{Container, Probe};
use serde_json::json;

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A loopback HTTP server answering each request with `respond(path)` (status line + extra
/// headers); keeps every request it got.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(respond: impl Fn(&str) -> String + Send + 'static) -> Server {
        let listener = TcpListener::bind((LOCAL, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req).into_owned();
                let path = req.split(' ').nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(req);
                let head = respond(&path);
                let _ = conn.write_all(format!("{head}\r\nContent-Length: 2\r\n\r\nok").as_bytes());
            }
        });
        Server { port, requests }
    }
}

fn probe(v: serde_json::Value) -> Probe {
    serde_json::from_value(v).unwrap()
}

fn container(ports: serde_json::Value) -> Container {
    serde_json::from_value(json!({"name": "web", "image": "b:1", "ports": ports})).unwrap()
}

/// An exec that must not be called.
struct NoExec;
impl ProbeExec for NoExec {
    fn exec(&self, argv: &[String], _: Duration) -> Result<i32, String> {
        panic!("unexpected exec {argv:?}")
    }
}

fn http(port: serde_json::Value, path: &str) -> Probe {
    probe(json!({"httpGet": {"port": port, "path": path}}))
}

fn failure_message(r: ProbeResult) -> String {
    match r {
        ProbeResult::Failure(m) => m,
        ProbeResult::Success => panic!("expected a failure"),
    }
}

#[test]
fn http_status_codes() {
    let server = Server::start(|path| match path {
        "/ok" => "HTTP/1.1 200 OK".into(),
        "/nocontent" => "HTTP/1.1 204 No Content".into(),
        "/boom" => "HTTP/1.1 500 Internal Server Error".into(),
        "/missing" => "HTTP/1.0 404 Not Found".into(),
        "/moved" => "HTTP/1.1 302 Found\r\nLocation: /ok".into(),
        "/moved-bad" => "HTTP/1.1 301 Moved\r\nlocation: /boom".into(),
        "/elsewhere" => "HTTP/1.1 302 Found\r\nLocation: http://example.invalid/x".into(),
        "/loop" => "HTTP/1.1 302 Found\r\nLocation: /loop".into(),
        _ => "HTTP/1.1 418 Teapot".into(),
    });
    let c = container(json!([]));
    let run = |path: &str| run_probe(&http(json!(server.port), path), &c, LOCAL, &NoExec);
    assert_eq!(run("/ok"), ProbeResult::Success);
    assert_eq!(run("/nocontent"), ProbeResult::Success);
    assert_eq!(
        failure_message(run("/boom")),
        "HTTP probe failed with statuscode: 500"
    );
    assert_eq!(
        failure_message(run("/missing")),
        "HTTP probe failed with statuscode: 404"
    );
    assert_eq!(run("/moved"), ProbeResult::Success);
    assert_eq!(
        failure_message(run("/moved-bad")),
        "HTTP probe failed with statuscode: 500",
        "same-host redirects are followed"
    );
    assert_eq!(
        run("/elsewhere"),
        ProbeResult::Success,
        "a redirect to another host counts as success"
    );
    assert!(failure_message(run("/loop")).contains("redirects"));
    let reqs = server.requests.lock().unwrap();
    assert!(reqs.iter().any(|r| r.starts_with("GET /boom HTTP/1.1\r\n")));
    assert!(!reqs.iter().any(|r| r.contains("example.invalid")));
}

#[test]
fn http_path_headers_and_named_port() {
    let server = Server::start(|_| "HTTP/1.1 200 OK".into());
    let c = container(
        json!([{"name": "metrics", "containerPort": 1}, {"name": "http", "containerPort": server.port}]),
    );
    let p = probe(json!({"httpGet": {
        "port": "http", "path": "healthz?full=1",
        "httpHeaders": [{"name": "X-Probe", "value": "yes"}, {"name": "Host", "value": "web.local"}]
    }}));
    assert_eq!(run_probe(&p, &c, LOCAL, &NoExec), ProbeResult::Success);
    let req = server.requests.lock().unwrap()[0].clone();
    assert!(req.starts_with("GET /healthz?full=1 HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("\r\nX-Probe: yes\r\n"), "{req}");
    assert!(req.contains("\r\nHost: web.local\r\n"), "{req}");
    assert_eq!(req.matches("Host:").count(), 1, "{req}");
    assert!(req.contains("User-Agent: kube-probe/"), "{req}");

    // A port name the container does not have.
    let p = probe(json!({"httpGet": {"port": "admin"}}));
    assert!(failure_message(run_probe(&p, &c, LOCAL, &NoExec)).contains("admin"));
    // A numeric string is a port number.
    let p = probe(json!({"httpGet": {"port": server.port.to_string()}}));
    assert_eq!(run_probe(&p, &c, LOCAL, &NoExec), ProbeResult::Success);
    // Out of range.
    let p = probe(json!({"httpGet": {"port": 70000}}));
    assert!(failure_message(run_probe(&p, &c, LOCAL, &NoExec)).contains("invalid port"));
    // An unknown scheme.
    let p = probe(json!({"httpGet": {"port": server.port, "scheme": "FTP"}}));
    assert!(failure_message(run_probe(&p, &c, LOCAL, &NoExec)).contains("FTP"));
    // HTTPS against a plain HTTP server: the handshake fails.
    let p = probe(json!({"httpGet": {"port": server.port, "scheme": "HTTPS"}}));
    assert!(matches!(
        run_probe(&p, &c, LOCAL, &NoExec),
        ProbeResult::Failure(_)
    ));
}

#[test]
fn http_host_field_overrides_the_pod_ip() {
    // A server on 127.0.0.2 only: the pod IP (127.0.0.1) has nothing on that port.
    let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let c = container(json!([]));
    let with_host = probe(json!({"httpGet": {"port": port, "host": "127.0.0.2"}}));
    assert_eq!(
        run_probe(&with_host, &c, LOCAL, &NoExec),
        ProbeResult::Success
    );
    let without = probe(json!({"httpGet": {"port": port}}));
    assert!(matches!(
        run_probe(&without, &c, LOCAL, &NoExec),
        ProbeResult::Failure(_)
    ));
    assert_eq!(
        run_probe(&without, &c, Ipv4Addr::new(127, 0, 0, 2), &NoExec),
        ProbeResult::Success
    );
}

/// Closes when dropped, so the silent server's socket does not outlive its test.
struct Silent {
    port: u16,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

/// Accepts connections and never answers.
fn silent_server() -> Silent {
    let listener = TcpListener::bind((LOCAL, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    Silent { port, _held: held }
}

#[test]
fn http_server_that_never_answers_fails_by_the_timeout() {
    let silent = silent_server();
    let p = probe(json!({"httpGet": {"port": silent.port, "path": "/"}, "timeoutSeconds": 1}));
    let t0 = Instant::now();
    let msg = failure_message(run_probe(&p, &container(json!([])), LOCAL, &NoExec));
    assert!(msg.contains("timeout"), "{msg}");
    // Bounded by the probe's timeout, not stuck (generous margin for a loaded machine).
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn closed_port_fails() {
    let port = {
        let l = TcpListener::bind((LOCAL, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let c = container(json!([]));
    let msg = failure_message(run_probe(&http(json!(port), "/"), &c, LOCAL, &NoExec));
    assert!(msg.contains("refused"), "{msg}");
    let tcp = probe(json!({"tcpSocket": {"port": port}}));
    let msg = failure_message(run_probe(&tcp, &c, LOCAL, &NoExec));
    assert!(
        msg.starts_with("dial tcp 127.0.0.1:") && msg.contains("refused"),
        "{msg}"
    );
}

#[test]
fn tcp_socket_connects() {
    let silent = silent_server();
    let c = container(json!([{"name": "db", "containerPort": silent.port}]));
    assert_eq!(
        run_probe(
            &probe(json!({"tcpSocket": {"port": silent.port}})),
            &c,
            LOCAL,
            &NoExec
        ),
        ProbeResult::Success
    );
    assert_eq!(
        run_probe(
            &probe(json!({"tcpSocket": {"port": "db"}})),
            &c,
            LOCAL,
            &NoExec
        ),
        ProbeResult::Success
    );
}

/// Records what it was asked and answers with a fixed result.
struct FakeExec {
    answer: Result<i32, String>,
    calls: Mutex<Vec<(Vec<String>, Duration)>>,
}

impl ProbeExec for FakeExec {
    fn exec(&self, argv: &[String], timeout: Duration) -> Result<i32, String> {
        self.calls.lock().unwrap().push((argv.to_vec(), timeout));
        self.answer.clone()
    }
}

#[test]
fn exec_probes() {
    let c = container(json!([]));
    let p = probe(json!({"exec": {"command": ["cat", "/tmp/healthy"]}}));
    let ok = FakeExec {
        answer: Ok(0),
        calls: Mutex::new(vec![]),
    };
    assert_eq!(run_probe(&p, &c, LOCAL, &ok), ProbeResult::Success);
    assert_eq!(
        ok.calls.lock().unwrap()[0],
        (
            vec!["cat".to_string(), "/tmp/healthy".to_string()],
            Duration::from_secs(1)
        ),
        "default timeout 1 s"
    );
    let failing = FakeExec {
        answer: Ok(1),
        calls: Mutex::new(vec![]),
    };
    let p3 = probe(json!({"exec": {"command": ["false"]}, "timeoutSeconds": 3}));
    assert!(failure_message(run_probe(&p3, &c, LOCAL, &failing)).contains("exited with code 1"));
    assert_eq!(failing.calls.lock().unwrap()[0].1, Duration::from_secs(3));
    let broken = FakeExec {
        answer: Err("command timed out".into()),
        calls: Mutex::new(vec![]),
    };
    assert_eq!(
        run_probe(&p, &c, LOCAL, &broken),
        ProbeResult::Failure("command timed out".into())
    );
    let empty = probe(json!({"exec": {}}));
    assert!(matches!(
        run_probe(&empty, &c, LOCAL, &NoExec),
        ProbeResult::Failure(_)
    ));
}

#[test]
fn grpc_and_empty_probes_fail() {
    let c = container(json!([]));
    let g = probe(json!({"grpc": {"port": 9000}}));
    assert_eq!(
        run_probe(&g, &c, LOCAL, &NoExec),
        ProbeResult::Failure("grpc probes are not supported".into())
    );
    assert!(matches!(
        run_probe(&probe(json!({})), &c, LOCAL, &NoExec),
        ProbeResult::Failure(_)
    ));
}

fn fail(m: &str) -> ProbeResult {
    ProbeResult::Failure(m.into())
}

#[test]
fn state_defaults_and_schedule() {
    let t0 = Instant::now();
    let s = ProbeState::new(
        ProbeKind::Liveness,
        &probe(json!({"exec": {"command": ["x"]}})),
        t0,
    );
    assert!(s.healthy(), "liveness starts healthy");
    assert_eq!(s.timeout(), Duration::from_secs(1));
    assert_eq!(s.period(), Duration::from_secs(10));
    assert!(s.due(t0), "no initial delay by default");
    assert!(!ProbeState::new(ProbeKind::Readiness, &probe(json!({})), t0).healthy());
    assert!(!ProbeState::new(ProbeKind::Startup, &probe(json!({})), t0).healthy());

    let mut s = ProbeState::new(
        ProbeKind::Readiness,
        &probe(json!({"initialDelaySeconds": 5, "periodSeconds": 2, "timeoutSeconds": 4})),
        t0,
    );
    assert_eq!(s.timeout(), Duration::from_secs(4));
    assert_eq!(s.next_due(), t0 + Duration::from_secs(5));
    assert!(!s.due(t0 + Duration::from_secs(4)));
    assert!(s.due(t0 + Duration::from_secs(5)));
    s.record(t0 + Duration::from_secs(6), ProbeResult::Success);
    assert_eq!(s.next_due(), t0 + Duration::from_secs(8));
    assert!(!s.due(t0 + Duration::from_secs(7)));
    assert!(s.due(t0 + Duration::from_secs(8)));
}

#[test]
fn liveness_thresholds() {
    let t0 = Instant::now();
    let mut s = ProbeState::new(
        ProbeKind::Liveness,
        &probe(json!({"failureThreshold": 2})),
        t0,
    );
    let at = |n: u64| t0 + Duration::from_secs(n * 10);
    assert_eq!(
        s.record(at(1), fail("a")),
        None,
        "one failure is below the threshold"
    );
    assert_eq!(
        s.record(at(2), ProbeResult::Success),
        None,
        "success resets the count"
    );
    assert_eq!(s.record(at(3), fail("b")), None);
    assert_eq!(
        s.record(at(4), fail("c")),
        Some(Transition::BecameUnhealthy("c".into()))
    );
    assert!(!s.healthy());
    assert_eq!(s.record(at(5), fail("d")), None, "only flips are reported");
    assert_eq!(
        s.record(at(6), ProbeResult::Success),
        Some(Transition::BecameHealthy)
    );
}

#[test]
fn readiness_thresholds() {
    let t0 = Instant::now();
    let mut s = ProbeState::new(
        ProbeKind::Readiness,
        &probe(json!({"successThreshold": 2, "failureThreshold": 3})),
        t0,
    );
    let at = |n: u64| t0 + Duration::from_secs(n);
    assert_eq!(s.record(at(1), fail("x")), None, "already unready: no flip");
    assert_eq!(s.record(at(2), ProbeResult::Success), None);
    assert_eq!(s.record(at(3), fail("x")), None);
    assert_eq!(s.record(at(4), ProbeResult::Success), None);
    assert_eq!(
        s.record(at(5), ProbeResult::Success),
        Some(Transition::BecameHealthy)
    );
    assert!(s.healthy());
    assert_eq!(s.record(at(6), ProbeResult::Success), None);
    assert_eq!(s.record(at(7), fail("1")), None);
    assert_eq!(s.record(at(8), fail("2")), None);
    assert_eq!(
        s.record(at(9), fail("3")),
        Some(Transition::BecameUnhealthy("3".into()))
    );
}

#[test]
fn startup_fails_after_the_threshold_and_ignores_success_threshold() {
    let t0 = Instant::now();
    let p = probe(json!({"failureThreshold": 2, "successThreshold": 5}));
    let mut s = ProbeState::new(ProbeKind::Startup, &p, t0);
    assert_eq!(s.record(t0, fail("no")), None);
    assert_eq!(
        s.record(t0, fail("still no")),
        Some(Transition::BecameUnhealthy("still no".into()))
    );
    let mut s = ProbeState::new(ProbeKind::Startup, &p, t0);
    assert_eq!(s.record(t0, fail("no")), None);
    assert_eq!(
        s.record(t0, ProbeResult::Success),
        Some(Transition::BecameHealthy),
        "startup needs one success"
    );
}

/// A self-signed test certificate for 127.0.0.1 (test fixture, trusted by nobody).
const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUKo1QVSR7UlE4eEQu4OSl0eaQlegwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyNTAyNTc0M1oYDzIxMjYxMTAx
MDI1NzQzWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQPwyWwWiizI+/sOTtFT4H6cmfVXThg1t+uAyLaHeXIcshFDsuuXF3k
gY0MWUKUoKoVU5IJbSOLyRCzZlsjgOUqo28wbTAdBgNVHQ4EFgQUNWrf8Cm9R1+U
VKDMB1NHGiMr3LEwHwYDVR0jBBgwFoAUNWrf8Cm9R1+UVKDMB1NHGiMr3LEwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCgYIKoZI
zj0EAwIDSAAwRQIhAIKBs7PZ3wHYfTQ69Gx5lr7WZzZKQKXadNaCzuSZ/esfAiB6
ols0CLlOUl/BoLtYkz7BTthq1sTEsizVSb8xzvveoQ==
-----END CERTIFICATE-----
";
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTdp2sJXOIs/4pk5F
YM7lbsc/KHC7lF9ohn73Wfm1ve+hRANCAAQPwyWwWiizI+/sOTtFT4H6cmfVXThg
1t+uAyLaHeXIcshFDsuuXF3kgY0MWUKUoKoVU5IJbSOLyRCzZlsjgOUq
-----END PRIVATE KEY-----
";

/// A loopback HTTPS server with the self-signed certificate, answering `respond(path)`.
fn tls_server(respond: impl Fn(&str) -> String + Send + 'static) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = CertificateDer::from_pem_slice(TEST_CERT.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind((LOCAL, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let Ok(server) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(server, conn);
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req).into_owned();
            let path = req.split(' ').nth(1).unwrap_or("").to_string();
            let head = respond(&path);
            let _ = tls.write_all(format!("{head}\r\nContent-Length: 0\r\n\r\n").as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    port
}

#[test]
fn https_probes_do_not_verify_the_certificate() {
    let port = tls_server(|path| match path {
        "/ok" => "HTTP/1.1 200 OK".into(),
        "/moved" => "HTTP/1.1 302 Found\r\nLocation: /down".into(),
        _ => "HTTP/1.1 503 Unavailable".into(),
    });
    let c = container(json!([{"name": "https", "containerPort": port}]));
    let https =
        |path: &str| probe(json!({"httpGet": {"port": "https", "scheme": "HTTPS", "path": path}}));
    assert_eq!(
        run_probe(&https("/ok"), &c, LOCAL, &NoExec),
        ProbeResult::Success
    );
    assert_eq!(
        failure_message(run_probe(&https("/down"), &c, LOCAL, &NoExec)),
        "HTTP probe failed with statuscode: 503"
    );
    assert_eq!(
        failure_message(run_probe(&https("/moved"), &c, LOCAL, &NoExec)),
        "HTTP probe failed with statuscode: 503"
    );
    // Plain HTTP to the TLS port is not a success.
    let plain = probe(json!({"httpGet": {"port": port, "path": "/ok"}}));
    assert!(matches!(
        run_probe(&plain, &c, LOCAL, &NoExec),
        ProbeResult::Failure(_)
    ));
}
