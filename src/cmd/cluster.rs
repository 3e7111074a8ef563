//! `gabang server`: the Kubernetes-compatible API server (crate `gabang-apiserver`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Cluster commands.
#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Run the Kubernetes-compatible API server (writes a CA, a serving cert and an
    /// admin kubeconfig under the data dir on first start)
    Server(ServerArgs),
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Store URL: sqlite:///path/state.db or etcd://host:2379,... (default: sqlite under ROOT/cluster)
    #[arg(long)]
    pub store: Option<String>,
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
    }
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
        let handle = gabang_apiserver::serve(gabang_apiserver::ServerConfig {
            listen: args.listen,
            data_dir,
            store: gabang_apiserver::StoreSpec::Url(store),
        })
        .await
        .context("starting the API server")?;
        println!("API server listening on https://{}", handle.local_addr);
        println!("export KUBECONFIG={}", handle.kubeconfig.display());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        handle.shutdown().await;
        Ok(0)
    })
}
