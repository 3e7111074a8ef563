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
    #[command(flatten)]
    pub controllers: ControllerArgs,
}

/// Controller settings shared by `gabang server` and `gabang up`.
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerArgs {
    /// How long a node's Lease may go unrenewed before the node is marked NotReady and its
    /// pods are evicted: seconds or a duration like 40s, 1m (as kube-controller-manager)
    #[arg(long, value_name = "DURATION", default_value = "40s",
          value_parser = gabang_controllers::nodelifecycle::parse_duration)]
    pub node_monitor_grace_period: chrono::Duration,
}

impl ControllerArgs {
    pub fn node_config(&self) -> gabang_controllers::nodelifecycle::Config {
        gabang_controllers::nodelifecycle::Config::with_grace(self.node_monitor_grace_period)
    }
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
fn start_controllers(
    addr: SocketAddr,
    local: PathBuf,
    ca_pem: String,
    token: String,
    node: gabang_controllers::nodelifecycle::Config,
) {
    use gabang_controllers::nodelifecycle::SystemClock;
    use gabang_controllers::runtime::{Config, Manager};
    let spawned = std::thread::Builder::new()
        .name("controllers".into())
        .spawn(move || {
            let cluster = match gabang_controllers::http::HttpCluster::new(addr, &ca_pem, &token) {
                Ok(c) => std::sync::Arc::new(c.via_local_socket(local)),
                Err(e) => {
                    eprintln!("gabang: controllers not started: {e}");
                    return;
                }
            };
            // Informers watch the API server; the worker blocks on its queue until a watch
            // event or a delayed key (lease expiry, progress deadline) needs it.
            let config = Config {
                node,
                ..Config::default()
            };
            let mut m = Manager::new(cluster, std::sync::Arc::new(SystemClock), config);
            m.run();
        });
    if let Err(e) = spawned {
        eprintln!("gabang: controllers not started: {e}");
    }
}

/// The API server's Unix socket (plain HTTP, root only) under its data directory: the
/// controllers and the agent of this process reach the server through it.
pub fn local_socket(data_dir: &Path) -> PathBuf {
    data_dir.join("api.sock")
}

/// The API server on `store` (CA, certificates and admin kubeconfig under `data_dir`), and
/// the controllers (node lifecycle with `node`) as its client unless `controllers` is false.
/// Shared by `server` and `up`.
pub async fn start_control_plane(
    listen: SocketAddr,
    data_dir: PathBuf,
    store: String,
    controllers: bool,
    node: gabang_controllers::nodelifecycle::Config,
) -> Result<gabang_apiserver::ServerHandle> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let local = local_socket(&data_dir);
    let handle = gabang_apiserver::serve(gabang_apiserver::ServerConfig {
        listen,
        data_dir,
        store: gabang_apiserver::StoreSpec::Url(store),
    })
    .await
    .context("starting the API server")?;
    handle.listen_local(&local)?;
    if controllers {
        start_controllers(
            handle.local_addr,
            local,
            handle.ca_pem.clone(),
            handle.token.clone(),
            node,
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
        let handle = start_control_plane(
            args.listen,
            data_dir,
            store,
            !args.no_controllers,
            args.controllers.node_config(),
        )
        .await?;
        println!("API server listening on https://{}", handle.local_addr);
        println!("export KUBECONFIG={}", handle.kubeconfig.display());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        handle.shutdown().await;
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ClusterCommand,
    }

    fn grace(args: &[&str]) -> Result<i64, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        match cli.cmd {
            ClusterCommand::Server(a) => Ok(a.controllers.node_config().grace.num_seconds()),
            ClusterCommand::Up(a) => Ok(a.controllers.node_config().grace.num_seconds()),
            ClusterCommand::Agent(_) => Err("agent".into()),
        }
    }

    #[test]
    fn node_monitor_grace_period_flag_on_server_and_up() {
        assert_eq!(grace(&["g", "server"]), Ok(40));
        assert_eq!(
            grace(&["g", "server", "--node-monitor-grace-period", "20s"]),
            Ok(20)
        );
        assert_eq!(
            grace(&["g", "server", "--node-monitor-grace-period", "90"]),
            Ok(90)
        );
        assert_eq!(grace(&["g", "up"]), Ok(40));
        assert_eq!(
            grace(&["g", "up", "--node-monitor-grace-period=1m"]),
            Ok(60)
        );
        let bad = grace(&["g", "up", "--node-monitor-grace-period", "soon"]);
        assert!(bad.is_err_and(|e| e.contains("invalid duration")));
    }
}
