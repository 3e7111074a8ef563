//! Mutating-call latency through the API server (HTTPS, JSON, validation, store)
//! side by side with the anchor: the same writes straight to the store.
//! `cargo bench -p gabang-apiserver --bench mutations`

use std::sync::Arc;
use std::time::{Duration, Instant};

use gabang_apiserver::{serve, ServerConfig, StoreSpec};
use gabang_store::{Backend, SqliteBackend, SqliteConfig};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

type Sender = http1::SendRequest<Full<bytes::Bytes>>;

async fn connect(addr: std::net::SocketAddr, ca_pem: &str) -> Sender {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    send
}

async fn create(
    send: &mut Sender,
    addr: std::net::SocketAddr,
    token: &str,
    name: &str,
) -> Duration {
    let body = format!("{{\"metadata\":{{\"name\":\"{name}\",\"labels\":{{\"b\":\"1\"}}}},\"data\":{{\"k\":\"v\"}}}}");
    let req = hyper::Request::post(format!(
        "https://{addr}/api/v1/namespaces/default/configmaps"
    ))
    .header("authorization", format!("Bearer {token}"))
    .header("content-type", "application/json")
    .header("host", "localhost")
    .body(Full::new(bytes::Bytes::from(body)))
    .unwrap();
    let t = Instant::now();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status();
    let _ = resp.into_body().collect().await.unwrap();
    assert_eq!(status, 201);
    t.elapsed()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, api: &mut [Duration], store: &mut [Duration]) {
    let (a50, a99, s50, s99) = (
        pct(api, 0.5),
        pct(api, 0.99),
        pct(store, 0.5),
        pct(store, 0.99),
    );
    println!(
        "{label}: api p50 {:.2} ms p99 {:.2} ms | store p50 {:.2} ms p99 {:.2} ms | p99 ratio {:.2}x",
        a50.as_secs_f64() * 1e3,
        a99.as_secs_f64() * 1e3,
        s50.as_secs_f64() * 1e3,
        s99.as_secs_f64() * 1e3,
        a99.as_secs_f64() / s99.as_secs_f64().max(1e-9)
    );
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Backend> =
        Arc::new(SqliteBackend::open(&dir.path().join("s.db"), SqliteConfig::default()).unwrap());
    let h = serve(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("pki"),
        store: StoreSpec::Backend(store.clone()),
    })
    .await
    .unwrap();
    let (addr, token, ca) = (h.local_addr, h.token.clone(), h.ca_pem.clone());

    // 20 changes/s for 10 s, interleaved: one API create, one store create per tick.
    let mut send = connect(addr, &ca).await;
    let (mut api, mut direct) = (Vec::new(), Vec::new());
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for i in 0..200 {
        tick.tick().await;
        api.push(create(&mut send, addr, &token, &format!("paced-{i}")).await);
        let t = Instant::now();
        store
            .create(
                &format!("/bench/paced/{i}"),
                b"{\"k\":\"v\"}".to_vec(),
                None,
            )
            .await
            .unwrap();
        direct.push(t.elapsed());
    }
    report("20/s (200 creates)", &mut api, &mut direct);

    // Max rate: 8 concurrent clients, 250 creates each; anchor: 8 concurrent store writers.
    let conc = 8;
    let per = 250;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conc {
        let (token, ca) = (token.clone(), ca.clone());
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
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..per {
                let t = Instant::now();
                store
                    .create(
                        &format!("/bench/max/{c}/{i}"),
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
        "max rate throughput: api {api_rate:.0}/s | store {store_rate:.0}/s | ratio {:.2}",
        api_rate / store_rate
    );
    let rss = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = rss
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("")
        .to_string();
    println!("bench process (server + clients) after load: {rss}");
    h.shutdown().await;
}
