//! API server numbers in one run, for the embedded SQLite store and for etcd side by
//! side, each next to its anchor (the same work straight on the store):
//! - mutating-call latency (HTTPS, JSON, validation, managedFields, store) at 20
//!   changes/s and at the maximum rate (8 concurrent clients);
//! - watch fan-out: 100 HTTP watchers, latency from the start of a write to its
//!   event arriving at each watcher (anchor: 100 store watches).
//!
//! `cargo bench -p gabang-apiserver --bench mutations` (etcd: Debian `etcd-server`;
//! without it the etcd half is skipped with a note).

#[path = "../../gabang-store/tests/support/etcd_server.rs"]
mod etcd_server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gabang_apiserver::{serve, ServerConfig, StoreSpec};
use gabang_store::{Backend, SqliteBackend, SqliteConfig};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

type Sender = http1::SendRequest<Full<bytes::Bytes>>;

async fn connect(addr: SocketAddr, ca_pem: &str) -> Sender {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    send
}

fn request(
    method: &str,
    addr: SocketAddr,
    token: &str,
    path: &str,
    body: String,
) -> hyper::Request<Full<bytes::Bytes>> {
    hyper::Request::builder()
        .method(method)
        .uri(format!("https://{addr}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("host", "localhost")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap()
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

async fn create(send: &mut Sender, addr: SocketAddr, token: &str, name: &str) -> Duration {
    let body = format!("{{\"metadata\":{{\"name\":\"{name}\",\"labels\":{{\"b\":\"1\"}}}},\"data\":{{\"k\":\"v\"}}}}");
    let t = Instant::now();
    let resp = send
        .send_request(request("POST", addr, token, CMS, body))
        .await
        .unwrap();
    let status = resp.status();
    let _ = resp.into_body().collect().await.unwrap();
    assert_eq!(status, 201);
    t.elapsed()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(label: &str, api: &mut [Duration], store: &mut [Duration]) {
    let (a50, a99, s50, s99) = (
        pct(api, 0.5),
        pct(api, 0.99),
        pct(store, 0.5),
        pct(store, 0.99),
    );
    println!(
        "  {label}: api p50 {:.2} ms p99 {:.2} ms | store p50 {:.2} ms p99 {:.2} ms | p99 ratio {:.2}x",
        ms(a50),
        ms(a99),
        ms(s50),
        ms(s99),
        a99.as_secs_f64() / s99.as_secs_f64().max(1e-9)
    );
}

/// Mutating calls at 20/s and at the maximum rate, each beside the same store writes.
async fn mutations(tag: &str, store: &Arc<dyn Backend>, addr: SocketAddr, token: &str, ca: &str) {
    let mut send = connect(addr, ca).await;
    let (mut api, mut direct) = (Vec::new(), Vec::new());
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for i in 0..200 {
        tick.tick().await;
        api.push(create(&mut send, addr, token, &format!("paced-{i}")).await);
        let t = Instant::now();
        store
            .create(
                &format!("/bench/{tag}/paced/{i}"),
                b"{\"k\":\"v\"}".to_vec(),
                None,
            )
            .await
            .unwrap();
        direct.push(t.elapsed());
    }
    report("20 changes/s (200 creates)", &mut api, &mut direct);

    let (conc, per) = (8, 250);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conc {
        let (token, ca) = (token.to_string(), ca.to_string());
        tasks.push(tokio::spawn(async move {
            let mut send = connect(addr, &ca).await;
            let mut lat = Vec::new();
            for i in 0..per {
                lat.push(create(&mut send, addr, &token, &format!("max-{c}-{i}")).await);
            }
            lat
        }));
    }
    let mut api = Vec::new();
    for t in tasks {
        api.extend(t.await.unwrap());
    }
    let api_rate = (conc * per) as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conc {
        let store = store.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..per {
                let t = Instant::now();
                store
                    .create(
                        &format!("/bench/{tag}/max/{c}/{i}"),
                        b"{\"k\":\"v\"}".to_vec(),
                        None,
                    )
                    .await
                    .unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut direct = Vec::new();
    for t in tasks {
        direct.extend(t.await.unwrap());
    }
    let store_rate = (conc * per) as f64 / t.elapsed().as_secs_f64();
    report("max rate (8 clients x 250 creates)", &mut api, &mut direct);
    println!(
        "  max-rate throughput: api {api_rate:.0}/s | store {store_rate:.0}/s | ratio {:.2}",
        api_rate / store_rate
    );
}

type Sent = Arc<Mutex<HashMap<String, Instant>>>;

/// One HTTP watch: pushes (name, delivery latency) for every event of a `fan-` object.
async fn http_watcher(
    addr: SocketAddr,
    token: String,
    ca: String,
    sent: Sent,
    rv: String,
    out: Arc<Mutex<Vec<Duration>>>,
    ready: tokio::sync::mpsc::Sender<()>,
) {
    let mut send = connect(addr, &ca).await;
    let path = format!("{CMS}?watch=true&labelSelector=fan%3D1&resourceVersion={rv}");
    let resp = send
        .send_request(request("GET", addr, &token, &path, String::new()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = ready.send(()).await;
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let now = Instant::now();
        buf.extend_from_slice(data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(ev) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            let name = ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if let Some(t0) = sent.lock().unwrap().get(&name) {
                out.lock().unwrap().push(now - *t0);
            }
        }
    }
}

/// 100 watchers; 50 writes at 20/s; latency from each write's start to each watcher.
async fn fan_out(tag: &str, store: &Arc<dyn Backend>, addr: SocketAddr, token: &str, ca: &str) {
    const WATCHERS: usize = 100;
    const WRITES: usize = 50;
    let rv = store.current_revision().await.unwrap().to_string();
    let sent: Sent = Arc::default();
    let api_lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(WATCHERS);
    let mut tasks = Vec::new();
    for _ in 0..WATCHERS {
        tasks.push(tokio::spawn(http_watcher(
            addr,
            token.to_string(),
            ca.to_string(),
            sent.clone(),
            rv.clone(),
            api_lat.clone(),
            ready_tx.clone(),
        )));
    }
    for _ in 0..WATCHERS {
        ready_rx.recv().await.unwrap();
    }
    // Anchor: 100 watches straight on the store.
    let store_lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let prefix = format!("/bench/{tag}/fan/");
    for _ in 0..WATCHERS {
        let rev = store.current_revision().await.unwrap();
        let mut w = store.watch(&prefix, rev).await.unwrap();
        let (sent, out) = (sent.clone(), store_lat.clone());
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(ev)) = w.next().await {
                let now = Instant::now();
                let name = format!("store-{}", ev.kv.key.trim_start_matches(&prefix));
                if let Some(t0) = sent.lock().unwrap().get(&name) {
                    out.lock().unwrap().push(now - *t0);
                }
            }
        }));
    }
    let mut send = connect(addr, ca).await;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for i in 0..WRITES {
        tick.tick().await;
        let name = format!("fan-{i}");
        let body = format!("{{\"metadata\":{{\"name\":\"{name}\",\"labels\":{{\"fan\":\"1\"}}}}}}");
        sent.lock().unwrap().insert(name, Instant::now());
        let resp = send
            .send_request(request("POST", addr, token, CMS, body))
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let _ = resp.into_body().collect().await;
        tick.tick().await;
        let sname = format!("store-{i}");
        sent.lock().unwrap().insert(sname, Instant::now());
        store
            .create(&format!("{prefix}{i}"), b"{}".to_vec(), None)
            .await
            .unwrap();
    }
    for _ in 0..100 {
        let done = api_lat.lock().unwrap().len() >= WATCHERS * WRITES
            && store_lat.lock().unwrap().len() >= WATCHERS * WRITES;
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in &tasks {
        t.abort();
    }
    let mut api = api_lat.lock().unwrap().clone();
    let mut direct = store_lat.lock().unwrap().clone();
    println!(
        "  watch fan-out: {} of {} deliveries over HTTP, {} of {} on the store",
        api.len(),
        WATCHERS * WRITES,
        direct.len(),
        WATCHERS * WRITES
    );
    report(
        "watch fan-out, 100 watchers, write start -> event",
        &mut api,
        &mut direct,
    );
}

async fn run(tag: &str, label: &str, store: Arc<dyn Backend>) {
    println!("{label}:");
    let dir = tempfile::tempdir().unwrap();
    let h = serve(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("pki"),
        store: StoreSpec::Backend(store.clone()),
    })
    .await
    .unwrap();
    let (addr, token, ca) = (h.local_addr, h.token.clone(), h.ca_pem.clone());
    mutations(tag, &store, addr, &token, &ca).await;
    fan_out(tag, &store, addr, &token, &ca).await;
    h.shutdown().await;
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Backend> =
        Arc::new(SqliteBackend::open(&dir.path().join("s.db"), SqliteConfig::default()).unwrap());
    run("sqlite", "embedded SQLite store", sqlite).await;

    let has_etcd = std::env::var_os("GABANG_ETCD_BIN").is_some()
        || std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|d| d.join("etcd").is_file());
    if has_etcd {
        let server = etcd_server::EtcdServer::start().await;
        let etcd = gabang_store::open(&format!(
            "etcd://{}",
            server.endpoint().trim_start_matches("http://")
        ))
        .await
        .unwrap();
        run("etcd", "etcd (one member on loopback)", etcd).await;
        drop(server);
    } else {
        println!("etcd: skipped (no etcd binary; apt-get install -y etcd-server)");
    }
    let rss = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = rss
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("")
        .to_string();
    println!("bench process (server + clients) after load: {rss}");
}
