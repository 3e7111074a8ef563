//! `gabang server`: the Kubernetes-compatible API server (crate `gabang-apiserver`) with the
//! controllers; `gabang agent` and `gabang up` live in [`super::agent`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Cluster commands.
#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Run the Kubernetes-compatible API server (writes a CA, a serving cert and an
    /// admin kubeconfig under the data dir on first start)
    Server(ServerArgs),
    /// Join this machine to a cluster as a node: run the Pods bound to it
    Agent(super::agent::AgentArgs),
    /// Run the whole cluster on this machine in one process: API server, controllers,
    /// scheduler, registry and the node agent (like `k3s server`)
    Up(super::agent::UpArgs),
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Store URL: sqlite:///path/state.db or etcd://host:2379,... (default: sqlite under ROOT/cluster)
    #[arg(long)]
    pub store: Option<String>,
    /// Serve the API only, without the controllers and the scheduler
    #[arg(long)]
    pub no_controllers: bool,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Where the CA, certificates and admin kubeconfig live (default: ROOT/cluster)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Runs a cluster command; returns the exit code.
pub fn run(cmd: ClusterCommand, root: &Path) -> Result<i32> {
    match cmd {
        ClusterCommand::Server(args) => server(args, root),
        ClusterCommand::Agent(a) => super::agent::run_agent(a, root),
        ClusterCommand::Up(a) => super::agent::run_up(a, root),
    }
}

/// The controllers (Deployment, ReplicaSet, scheduler, endpoints, GC, node lifecycle) as
/// a client of the API server, on a plain thread: their HTTP client blocks on its own runtime.
fn start_controllers(addr: SocketAddr, ca_pem: String, token: String) {
    use gabang_controllers::nodelifecycle::SystemClock;
    use gabang_controllers::runtime::{Config, Manager};
    let spawned = std::thread::Builder::new()
        .name("controllers".into())
        .spawn(move || {
            let cluster = match gabang_controllers::http::HttpCluster::new(addr, &ca_pem, &token) {
                Ok(c) => std::sync::Arc::new(c),
                Err(e) => {
                    eprintln!("gabang: controllers not started: {e}");
                    return;
                }
            };
            // Informers watch the API server; the worker blocks on its queue until a watch
            // event or a delayed key (lease expiry, progress deadline) needs it.
            let mut m = Manager::new(cluster, std::sync::Arc::new(SystemClock), Config::default());
            m.run();
        });
    if let Err(e) = spawned {
        eprintln!("gabang: controllers not started: {e}");
    }
}

/// The API server on `store` (CA, certificates and admin kubeconfig under `data_dir`), and
/// the controllers as its client unless `controllers` is false. Shared by `server` and `up`.
pub async fn start_control_plane(
    listen: SocketAddr,
    data_dir: PathBuf,
    store: String,
    controllers: bool,
) -> Result<gabang_apiserver::ServerHandle> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let handle = gabang_apiserver::serve(gabang_apiserver::ServerConfig {
        listen,
        data_dir,
        store: gabang_apiserver::StoreSpec::Url(store),
    })
    .await
    .context("starting the API server")?;
    if controllers {
        start_controllers(
            handle.local_addr,
            handle.ca_pem.clone(),
            handle.token.clone(),
        );
    }
    Ok(handle)
}

fn server(args: ServerArgs, root: &Path) -> Result<i32> {
    let data_dir = args.data_dir.unwrap_or_else(|| root.join("cluster"));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let store = args
        .store
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("state.db").display()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let handle =
            start_control_plane(args.listen, data_dir, store, !args.no_controllers).await?;
        println!("API server listening on https://{}", handle.local_addr);
        println!("export KUBECONFIG={}", handle.kubeconfig.display());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        handle.shutdown().await;
        Ok(0)
    })
}
