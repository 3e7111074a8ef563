//! Registry commands: `push`, `pull`, `login`, `logout`, and `registry serve|gc`.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use gabang_content::{ImageRef, Store};
use gabang_registry::client::{self, Options};
use gabang_registry::registry::{AuthMode, Config, Registry};
use gabang_registry::{auth::Htpasswd, server};
use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum RegistryTopCommand {
    /// Push an image to a registry
    Push(PushArgs),
    /// Pull an image from a registry
    Pull(PullArgs),
    /// Log in to a registry (credentials go to ~/.docker/config.json)
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Serve an OCI Distribution registry over this root's content store
    Serve(ServeArgs),
    /// Delete unreferenced registry blobs (online: pushes keep running)
    Gc(GcArgs),
}

#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Use plain HTTP for this registry (always so for localhost and 127.0.0.1)
    #[arg(long)]
    pub insecure: bool,
    /// Trust this CA certificate (PEM) for the registry's TLS
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Blobs transferred at once
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Do not show progress bars
    #[arg(long, short)]
    pub quiet: bool,
}

impl ClientArgs {
    fn options(&self) -> Options {
        Options {
            insecure: self.insecure,
            ca_cert: self.ca_cert.clone(),
            concurrency: self.concurrency,
            progress: !self.quiet && std::io::stderr().is_terminal(),
            ..Default::default()
        }
    }
}

#[derive(Args)]
pub struct PushArgs {
    /// REGISTRY/NAME[:TAG] (a local image of that name is pushed)
    pub reference: String,
    /// Push this local image instead of the one named REFERENCE
    #[arg(long)]
    pub from: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args)]
pub struct PullArgs {
    /// REGISTRY/NAME[:TAG|@DIGEST]
    pub reference: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args)]
pub struct LoginArgs {
    /// Registry host[:port]
    pub registry: String,
    #[arg(long, short)]
    pub username: Option<String>,
    #[arg(long, short)]
    pub password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// Registry host[:port]
    pub registry: String,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,
    /// htpasswd file (bcrypt entries, `htpasswd -B`): require authentication
    #[arg(long)]
    pub htpasswd: Option<PathBuf>,
    /// With --htpasswd: plain basic auth instead of docker's token flow
    #[arg(long)]
    pub basic_auth: bool,
    /// TLS certificate chain (PEM)
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest manifest accepted, in bytes
    #[arg(long, default_value_t = 4 << 20)]
    pub max_manifest_bytes: usize,
    /// Run GC every this many seconds (0: never)
    #[arg(long, default_value_t = 0)]
    pub gc_interval: u64,
    /// Unreferenced blobs untouched for this many seconds are collected
    #[arg(long, default_value_t = 3600)]
    pub gc_grace: u64,
}

#[derive(Args)]
pub struct GcArgs {
    /// Unreferenced blobs untouched for this many seconds are collected
    #[arg(long, default_value_t = 3600)]
    pub grace: u64,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")
}

pub fn run_top(cmd: RegistryTopCommand, root: &Path) -> Result<i32> {
    match cmd {
        RegistryTopCommand::Push(a) => {
            let store = Store::open(root)?;
            let dest = ImageRef::parse(&a.reference)?;
            let local = a.from.clone().unwrap_or_else(|| a.reference.clone());
            let r = client::push(&store, &local, &dest, &a.client.options())?;
            println!(
                "{}: digest: {} ({} pushed, {} mounted, {} already there, {} bytes)",
                dest.tagged().unwrap_or_else(|| dest.name()),
                r.manifest_digest,
                r.uploaded,
                r.mounted,
                r.skipped,
                r.bytes_uploaded
            );
            Ok(0)
        }
        RegistryTopCommand::Pull(a) => {
            let store = Store::open(root)?;
            let reference = ImageRef::parse(&a.reference)?;
            let (img, r) = client::pull(&store, &reference, &a.client.options())?;
            println!("Digest: {}", r.manifest_digest);
            println!(
                "Status: pulled {} ({} blobs downloaded, {} already present, image {})",
                reference.tagged().unwrap_or_else(|| a.reference.clone()),
                r.downloaded,
                r.present,
                img.short_id()
            );
            Ok(0)
        }
        RegistryTopCommand::Login(a) => {
            let user = match a.username {
                Some(u) => u,
                None => bail!("--username is required"),
            };
            let password = if a.password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                line.trim_end_matches(['\n', '\r']).to_string()
            } else {
                match a.password {
                    Some(p) => p,
                    None => bail!("--password or --password-stdin is required"),
                }
            };
            client::login(&a.registry, &user, &password, &a.client.options())?;
            println!("Login Succeeded");
            Ok(0)
        }
        RegistryTopCommand::Logout(a) => {
            if client::logout(&a.registry, &Options::default())? {
                println!("Removing login credentials for {}", a.registry);
            } else {
                println!("Not logged in to {}", a.registry);
            }
            Ok(0)
        }
    }
}

pub fn run(cmd: RegistryCommand, root: &Path) -> Result<i32> {
    match cmd {
        RegistryCommand::Serve(a) => {
            let store = Arc::new(Store::open(root)?);
            let auth = match &a.htpasswd {
                None => AuthMode::None,
                Some(p) => {
                    let h = Arc::new(Htpasswd::load(p)?);
                    if a.basic_auth {
                        AuthMode::Basic(h)
                    } else {
                        AuthMode::Token(h)
                    }
                }
            };
            let cfg = Config {
                max_manifest_bytes: a.max_manifest_bytes,
                gc_grace: std::time::Duration::from_secs(a.gc_grace),
                auth,
                ..Default::default()
            };
            let reg = Arc::new(Registry::open(store, cfg)?);
            let tls = match (&a.tls_cert, &a.tls_key) {
                (Some(c), Some(k)) => Some(server::load_tls(c, k)?),
                _ => None,
            };
            let rt = runtime()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(a.addr)
                    .await
                    .with_context(|| format!("listen on {}", a.addr))?;
                eprintln!(
                    "gabang registry listening on {}://{}",
                    if tls.is_some() { "https" } else { "http" },
                    listener.local_addr()?
                );
                if a.gc_interval > 0 {
                    let reg = reg.clone();
                    let every = std::time::Duration::from_secs(a.gc_interval);
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(every).await;
                            match reg.gc().await {
                                Ok(r) => tracing::info!("registry gc: {r:?}"),
                                Err(e) => tracing::warn!("registry gc: {e}"),
                            }
                        }
                    });
                }
                server::serve(reg, listener, tls, async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
                anyhow::Ok(())
            })?;
            Ok(0)
        }
        RegistryCommand::Gc(a) => {
            let store = Arc::new(Store::open(root)?);
            let cfg = Config {
                gc_grace: std::time::Duration::from_secs(a.grace),
                ..Default::default()
            };
            let reg = Registry::open(store, cfg)?;
            let r = runtime()?.block_on(reg.gc())?;
            println!(
                "removed {} blob links, {} abandoned uploads, {} blobs ({} bytes)",
                r.links_removed, r.uploads_removed, r.blobs_removed, r.bytes_freed
            );
            Ok(0)
        }
    }
}
