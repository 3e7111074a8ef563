//! Runs the API server: `cargo run -p gabang-apiserver --example apiserver -- DATA_DIR [LISTEN]`.
//! Prints the kubeconfig path, then serves until killed.

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: apiserver DATA_DIR [LISTEN]");
        std::process::exit(2);
    };
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:6443".into());
    let Ok(listen) = listen.parse() else {
        eprintln!("bad listen address {listen}");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let config = gabang_apiserver::ServerConfig {
        listen,
        data_dir: dir.clone(),
        store: gabang_apiserver::StoreSpec::Url(format!(
            "sqlite://{}",
            dir.join("state.db").display()
        )),
    };
    match gabang_apiserver::serve(config).await {
        Ok(h) => {
            println!("{} {}", h.local_addr, h.kubeconfig.display());
            h.wait().await;
        }
        Err(e) => {
            eprintln!("apiserver: {e}");
            std::process::exit(1);
        }
    }
}
