//! gabang: one binary that builds images, stores them in layers, runs them as containers,
//! ships them through a registry, and keeps a declared cluster state true.

mod cmd;
mod ui;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "gabang", version, about = "가방 (a bag): build, store, run, ship and orchestrate containers", long_about = None)]
struct Cli {
    /// Directory holding all state (images, containers, cluster data)
    #[arg(
        long,
        global = true,
        env = "GABANG_ROOT",
        default_value = "/var/lib/gabang"
    )]
    root: PathBuf,
    /// Log level (error, warn, info, debug, trace)
    #[arg(long, global = true, env = "GABANG_LOG", default_value = "warn")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Container(cmd::container::ContainerCommand),
    #[command(flatten)]
    Cluster(cmd::cluster::ClusterCommand),
    #[command(flatten)]
    Image(cmd::image::TopImageCommand),
    /// Manage images
    #[command(subcommand, name = "image")]
    ImageSub(cmd::image::ImageCommand),
    /// Build an image from a Dockerfile
    Build(cmd::build::BuildArgs),
    /// Low-level layer tools (benchmarks, debugging)
    #[command(subcommand, hide = true)]
    Layer(cmd::layer::LayerCommand),
    #[command(flatten)]
    RegistryTop(cmd::registry::RegistryTopCommand),
    /// Run or maintain an OCI registry
    #[command(subcommand)]
    Registry(cmd::registry::RegistryCommand),
    #[command(flatten)]
    Kube(cmd::kube::KubeCommand),
    /// Kubernetes client commands (apply, get, describe, delete, scale, logs), like `k3s kubectl`
    #[command(subcommand, visible_alias = "k")]
    Kubectl(cmd::kube::KubectlCommand),
}

fn main() {
    // Like other Unix tools, die quietly on a closed pipe (`gabang images | head -1`).
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // `gabang shim …` runs once per container start (and per exec): straight to the shim,
    // without building the whole CLI's argument parser. Its log level comes from GABANG_LOG.
    if std::env::args_os().nth(1).is_some_and(|a| a == "shim") {
        let level = std::env::var("GABANG_LOG").unwrap_or_else(|_| "warn".into());
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(std::io::stderr)
            .without_time()
            .init();
        let args: Vec<String> = std::env::args().skip(2).collect();
        std::process::exit(gabang_runtime::shim_main(args));
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log_level))
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let res = match cli.command {
        Command::Container(c) => cmd::container::run(c, &cli.root),
        Command::Cluster(c) => cmd::cluster::run(c, &cli.root),
        Command::Image(c) => cmd::image::run_top(c, &cli.root),
        Command::ImageSub(c) => cmd::image::run(c, &cli.root),
        Command::Layer(c) => cmd::layer::run(c),
        Command::Build(a) => cmd::build::run(a, &cli.root),
        Command::RegistryTop(c) => cmd::registry::run_top(c, &cli.root),
        Command::Registry(c) => cmd::registry::run(c, &cli.root),
        Command::Kube(c) => cmd::kube::run(c, &cli.root),
        Command::Kubectl(c) => cmd::kube::run_kubectl(c, &cli.root),
    };
    match res {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("gabang: {e:#}");
            std::process::exit(1);
        }
    }
}
