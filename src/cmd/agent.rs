//! `gabang agent` (the node agent joining a cluster) and `gabang up` (API server + controllers
//! + registry + the agent for this machine in one process, like `k3s server`).

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use gabang_agent::agent::{self, AgentConfig, AgentHandle, ApiConfig};
use gabang_agent::node::{self, NodeConfig};
use gabang_agent::pods::{PodRuntime, PodRuntimeConfig};

#[derive(clap::Args)]
pub struct AgentArgs {
    /// API server URL (https://HOST:PORT)
    #[arg(long, requires = "token", conflicts_with = "kubeconfig")]
    pub server: Option<String>,
    /// Bearer token for the API server
    #[arg(long)]
    pub token: Option<String>,
    /// The API server's CA certificate (PEM)
    #[arg(long, requires = "server")]
    pub ca_file: Option<PathBuf>,
    /// Take server, CA and token from a kubeconfig (e.g. ROOT/cluster/admin.kubeconfig)
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// What both `agent` and `up` take about the node.
#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// Node name (default: the host name)
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's pod range (default: the Node's existing one, else a free /24 of 10.42.0.0/16)
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The node's address (default: the default-route interface's, else 127.0.0.1)
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// Port of the logs/exec endpoint
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// Allow hostPath volumes
    #[arg(long)]
    pub allow_host_path: bool,
    /// Pods synced at once
    #[arg(long, default_value_t = 4, hide = true)]
    pub workers: usize,
}

#[derive(clap::Args)]
pub struct UpArgs {
    /// API server address
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Registry address (same content store as the node)
    #[arg(long, default_value = "127.0.0.1:5000", conflicts_with = "no_registry")]
    pub registry: SocketAddr,
    /// Do not serve a registry
    #[arg(long)]
    pub no_registry: bool,
    #[command(flatten)]
    pub controllers: super::cluster::ControllerArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Server, CA and token of the kubeconfig's first cluster and user (the shape
/// `gabang server` writes: `server:`, `certificate-authority-data:` or
/// `certificate-authority:`, `token:`).
fn read_kubeconfig(path: &Path) -> Result<(String, String, String)> {
    use base64::Engine;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let field = |key: &str| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix(key)
                .map(|v| v.trim().trim_matches('"').to_string())
        })
    };
    let server = field("server:")
        .ok_or_else(|| anyhow!("{}: no clusters[].cluster.server", path.display()))?;
    let ca = if let Some(d) = field("certificate-authority-data:") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(d.as_bytes())
            .with_context(|| format!("{}: certificate-authority-data", path.display()))?;
        String::from_utf8(raw)
            .with_context(|| format!("{}: certificate-authority-data", path.display()))?
    } else if let Some(f) = field("certificate-authority:") {
        let f = path.parent().unwrap_or(Path::new(".")).join(f);
        std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?
    } else {
        bail!("{}: no certificate-authority(-data)", path.display());
    };
    let token =
        field("token:").ok_or_else(|| anyhow!("{}: no users[].user.token", path.display()))?;
    Ok((server, ca, token))
}

fn server_addr(url: &str) -> Result<SocketAddr> {
    let hostport = url
        .strip_prefix("https://")
        .ok_or_else(|| anyhow!("--server {url:?}: expected https://HOST:PORT"))?
        .trim_end_matches('/');
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:6443")
    };
    hostport
        .to_socket_addrs()
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .ok_or_else(|| anyhow!("{hostport}: no address"))
}

fn api_config(a: &AgentArgs) -> Result<ApiConfig> {
    let (server, ca_pem, token) = match (&a.kubeconfig, &a.server) {
        (Some(k), _) => read_kubeconfig(k)?,
        (None, Some(s)) => {
            let token = a
                .token
                .clone()
                .ok_or_else(|| anyhow!("--server needs --token"))?;
            let ca = a
                .ca_file
                .as_ref()
                .ok_or_else(|| anyhow!("--server needs --ca-file"))?;
            let ca_pem =
                std::fs::read_to_string(ca).with_context(|| format!("reading {}", ca.display()))?;
            (s.clone(), ca_pem, token)
        }
        (None, None) => bail!("give --server URL --token T --ca-file F, or --kubeconfig F"),
    };
    Ok(ApiConfig {
        addr: server_addr(&server)?,
        ca_pem,
        token,
        local: None,
    })
}

/// Registers the node and starts the loop (blocking calls: run it on a plain thread).
/// A running node: the agent loop and its logs/exec endpoint.
struct NodeHandle {
    agent: AgentHandle,
    endpoint: gabang_agent::server::EndpointHandle,
}

impl NodeHandle {
    fn stop(self) {
        self.agent.stop();
        self.endpoint.stop();
    }
}

fn start_agent(api: ApiConfig, n: &NodeArgs, root: &Path) -> Result<NodeHandle> {
    let name = match &n.node_name {
        Some(n) => n.clone(),
        None => node::HostFacts::probe().hostname,
    };
    let node_ip = n
        .node_ip
        .or_else(node::default_route_ip)
        .unwrap_or(Ipv4Addr::LOCALHOST);
    let pod_cidr = agent::resolve_pod_cidr(&api, &name, n.pod_cidr.as_deref())
        .context("choosing the pod CIDR")?;
    let exe = std::env::current_exe().context("locate the gabang binary for the shim")?;
    let pods = PodRuntime::new(PodRuntimeConfig {
        root: root.to_path_buf(),
        shim_exe: exe,
        shim_prefix_args: vec!["shim".into()],
        node_name: name.clone(),
        host_ip: node_ip.to_string(),
        pod_cidr,
        bridge: node::bridge_name(pod_cidr),
        allow_host_path: n.allow_host_path,
    })
    .context("starting the pod runtime")?;
    // The logs/exec endpoint (kubelet's port role) the API server proxies to: every caller
    // must present the API server's token. It reads the same runtime state as the pods.
    let endpoint_runtime = gabang_runtime::Runtime::new(gabang_runtime::RuntimeConfig {
        root: root.to_path_buf(),
        shim_exe: std::env::current_exe().context("locate the gabang binary for the shim")?,
        shim_prefix_args: vec!["shim".into()],
    })
    .context("opening the runtime for the logs/exec endpoint")?;
    let endpoint = gabang_agent::server::start(
        gabang_agent::server::EndpointConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], n.port)),
            token: api.token.clone(),
        },
        Arc::new(endpoint_runtime),
    )
    .with_context(|| format!("starting the logs/exec endpoint on port {}", n.port))?;
    let mut cfg = AgentConfig::new(NodeConfig {
        name: name.clone(),
        node_ip,
        pod_cidr,
        endpoint_port: n.port,
        runtime_version: env!("CARGO_PKG_VERSION").into(),
    });
    cfg.workers = n.workers.max(1);
    let handle = agent::start(api, cfg, Arc::new(pods)).context("starting the agent")?;
    eprintln!(
        "gabang agent: node {name} ({node_ip}), pod CIDR {}",
        node::format_cidr(pod_cidr)
    );
    Ok(NodeHandle {
        agent: handle,
        endpoint,
    })
}

/// Waits for SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `gabang agent`: joins this machine to a cluster as a node; returns the exit code.
pub fn run_agent(a: AgentArgs, root: &Path) -> Result<i32> {
    let api = api_config(&a)?;
    let handle = start_agent(api, &a.node, root)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    rt.block_on(stop_signal());
    // Containers keep running; the next agent adopts them.
    handle.stop();
    Ok(0)
}

/// `gabang up`: the whole cluster on this machine in one process; returns the exit code.
pub fn run_up(a: UpArgs, root: &Path) -> Result<i32> {
    let data_dir = root.join("cluster");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let server = super::cluster::start_control_plane(
            a.listen,
            data_dir.clone(),
            format!("sqlite://{}", data_dir.join("state.db").display()),
            true,
            a.controllers.node_config(),
        )
        .await?;
        let registry = if a.no_registry {
            None
        } else {
            Some(start_registry(root, a.registry).await?)
        };
        let api = ApiConfig {
            addr: server.local_addr,
            ca_pem: server.ca_pem.clone(),
            token: server.token.clone(),
            local: Some(super::cluster::local_socket(&data_dir)),
        };
        let node_args = a.node.clone();
        let root2 = root.to_path_buf();
        // The agent's client blocks on its own runtime: start it from a plain thread.
        let agent = std::thread::spawn(move || start_agent(api, &node_args, &root2))
            .join()
            .map_err(|_| anyhow!("the agent start-up panicked"))??;
        println!("API server listening on https://{}", server.local_addr);
        if let Some((addr, _)) = &registry {
            println!("registry listening on http://{addr}");
        }
        println!("node {} is up", agent.agent.node_name());
        println!("export KUBECONFIG={}", server.kubeconfig.display());
        stop_signal().await;
        let _ = tokio::task::spawn_blocking(move || agent.stop()).await;
        if let Some((_, stop)) = registry {
            let _ = stop.send(());
        }
        server.shutdown().await;
        anyhow::Ok(0)
    })
}

/// The registry over this root's content store (what `gabang registry serve` runs, without
/// auth or TLS); returns its address and a sender that stops it.
async fn start_registry(
    root: &Path,
    addr: SocketAddr,
) -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    use gabang_registry::registry::{Config, Registry};
    let store = gabang_content::Store::shared(root)?;
    let reg = Arc::new(Registry::open(store, Config::default())?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("registry: listen on {addr}"))?;
    let local = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        if let Err(e) = gabang_registry::server::serve(reg, listener, None, shutdown).await {
            tracing::warn!("registry: {e}");
        }
    });
    Ok((local, tx))
}
