//! `gabang build`: Dockerfile → image in the content store, printed like docker's
//! classic builder (`Step 3/6 : COPY …`, ` ---> CACHED` or why the cache missed,
//! `Successfully built <id>`, `Successfully tagged <ref>`). Nothing is tagged
//! unless every step succeeded.

use anyhow::{bail, Context, Result};
use gabang_build::cache::CacheIndex;
use gabang_build::context::{BuildContext, StatCache};
use gabang_build::exec::{BuildSink, StoreExecutor};
use gabang_build::plan::Progress;
use gabang_build::{build, parse, BuildError, BuildOptions};
use gabang_content::ImageRef;
use gabang_runtime::{Runtime, RuntimeConfig};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); may be given several times
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Path of the Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable (K=V, or K to take it from the environment)
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Build up to this stage
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache
    #[arg(long)]
    pub no_cache: bool,
    /// Set metadata on the image (k=v)
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Print only the image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Progress output: auto, plain or tty
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Platform to build for (os/arch)
    #[arg(long)]
    pub platform: Option<String>,
    /// The build context directory
    pub context: PathBuf,
}

struct Printer {
    quiet: bool,
    total: usize,
    n: AtomicUsize,
    out: Mutex<()>,
}

impl Printer {
    fn line(&self, s: &str) {
        if self.quiet {
            return;
        }
        let _g = self.out.lock();
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{s}");
        let _ = o.flush();
    }
}

impl BuildSink for Printer {
    fn progress(&self, event: &Progress<'_>) {
        match event {
            Progress::Stage { name, base, .. } => {
                let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
                let alias = name.map(|a| format!(" AS {a}")).unwrap_or_default();
                self.line(&format!("Step {n}/{} : FROM {base}{alias}", self.total));
            }
            Progress::Step { text, .. } => {
                let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
                self.line(&format!("Step {n}/{} : {text}", self.total));
            }
            Progress::Cached { .. } => self.line(" ---> CACHED"),
            Progress::Miss { reason, .. } => self.line(&format!(" ---> cache miss: {reason}")),
            Progress::Done { id, .. } => {
                self.line(&format!(" ---> {}", &id[..id.len().min(12)]));
            }
            Progress::Warning(w) => {
                if !self.quiet {
                    eprintln!("[WARNING]: {w}");
                }
            }
        }
    }
    fn output(&self, line: &str) {
        self.line(line);
    }
}

fn kv(list: &[String], what: &str, env_fallback: bool) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for s in list {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                m.insert(k.to_string(), v.to_string());
            }
            None if env_fallback && !s.is_empty() => {
                if let Ok(v) = std::env::var(s) {
                    m.insert(s.clone(), v);
                }
            }
            _ => bail!("{what} {s:?}: expected KEY=VALUE"),
        }
    }
    Ok(m)
}

pub fn run(args: BuildArgs, root: &Path) -> Result<i32> {
    if !matches!(args.progress.as_str(), "auto" | "plain" | "tty") {
        bail!(
            "--progress {:?}: expected auto, plain or tty",
            args.progress
        );
    }
    let tags: Vec<ImageRef> = args
        .tags
        .iter()
        .map(|t| ImageRef::parse(t).with_context(|| format!("invalid tag {t:?}")))
        .collect::<Result<_>>()?;
    let ctx_dir = std::fs::canonicalize(&args.context)
        .with_context(|| format!("build context {}", args.context.display()))?;
    if !ctx_dir.is_dir() {
        bail!("build context {} is not a directory", ctx_dir.display());
    }
    let df_path = match &args.file {
        Some(f) => f.clone(),
        None => ctx_dir.join("Dockerfile"),
    };
    let df_path = std::fs::canonicalize(&df_path)
        .with_context(|| format!("read the Dockerfile {}", df_path.display()))?;
    let text = std::fs::read_to_string(&df_path)
        .with_context(|| format!("read the Dockerfile {}", df_path.display()))?;
    let shown = df_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "Dockerfile".into());
    let df = parse(&shown, &text)?;

    let mut opts = BuildOptions::new(&format!("{}|{}", df_path.display(), ctx_dir.display()));
    opts.build_args = kv(&args.build_args, "--build-arg", true)?;
    opts.labels = kv(&args.labels, "--label", false)?;
    opts.target = args.target.clone();
    opts.no_cache = args.no_cache;
    if let Some(p) = &args.platform {
        opts.platform = gabang_build::plan::parse_platform(p)
            .with_context(|| format!("--platform {p:?}: expected os/arch[/variant]"))?;
    }

    let store = crate::cmd::image::open_store(root)?;
    let _lease = store.lease()?;
    let exe = std::env::current_exe().context("locate the gabang binary for the shim")?;
    let runtime = Runtime::new(RuntimeConfig {
        root: root.to_owned(),
        shim_exe: exe,
        shim_prefix_args: vec!["shim".into()],
    })?;
    let bdir = root.join("build");
    std::fs::create_dir_all(bdir.join("statcache"))?;
    let ctx_key = gabang_content::Digest::sha256_of(ctx_dir.to_string_lossy().as_bytes());
    let stat = StatCache::load(&bdir.join(format!("statcache/{}.json", ctx_key.hex())));
    let mut ctx = BuildContext::open(&ctx_dir, stat)?;
    let mut cache = CacheIndex::load(&bdir.join("cache.json"));

    let total = df
        .stages
        .iter()
        .map(|s| {
            1 + s
                .instructions
                .iter()
                .filter(|i| !matches!(i.kind, gabang_build::parser::InstructionKind::Arg(_)))
                .count()
        })
        .sum();
    let printer = Printer {
        quiet: args.quiet,
        total,
        n: AtomicUsize::new(0),
        out: Mutex::new(()),
    };
    let exec =
        StoreExecutor::new(&store, &runtime, &printer).map_err(|e| anyhow::anyhow!(e.message))?;
    let res = match build(&df, &opts, &mut ctx, &mut cache, &exec) {
        Ok(r) => r,
        Err(BuildError::Step {
            file,
            pos,
            text,
            error,
        }) => {
            eprintln!("{file}:{pos}: {text}: {}", error.message);
            if let Some(c) = error.exit_code {
                eprintln!("The command '{text}' returned a non-zero code: {c}");
            }
            if !error.output_tail.is_empty() {
                eprintln!("--- last lines of output ---\n{}", error.output_tail);
            }
            return Ok(error.exit_code.filter(|c| *c != 0).unwrap_or(1));
        }
        Err(e) => return Err(e.into()),
    };
    // Like docker: when every step hit the cache, the result is the image built
    // last time from the same steps (same ID), not a new one differing only in `created`.
    let all_cached = res
        .steps
        .iter()
        .all(|s| s.cached || s.empty_layer && s.miss.is_none());
    let memo_key = gabang_content::Digest::sha256_of(
        format!("{}|{:?}|{:?}", res.final_key, opts.labels, opts.target).as_bytes(),
    );
    let memo = bdir.join(format!("images/{}", memo_key.hex()));
    let previous = if all_cached && !opts.no_cache {
        std::fs::read_to_string(&memo)
            .ok()
            .and_then(|d| store.resolve_image(d.trim()).ok())
    } else {
        None
    };
    let img = match previous {
        Some(prev) => {
            let mut img = prev;
            for t in &tags {
                if let Some(name) = t.tagged() {
                    img = store.tag(&img.manifest_digest.to_string(), &name)?;
                }
            }
            img
        }
        None => {
            let cfg = gabang_build::config::config_json(&res.config, &res.extra);
            let bytes = serde_json::to_vec(&cfg)?;
            let layers = exec
                .image_layers(&res.config)
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let img = store.create_image_raw(&bytes, &layers, &tags)?;
            std::fs::create_dir_all(bdir.join("images"))?;
            let tmp = memo.with_extension("tmp");
            std::fs::write(&tmp, img.manifest_digest.to_string())?;
            std::fs::rename(&tmp, &memo)?;
            img
        }
    };
    if args.quiet {
        println!("{}", img.id);
        return Ok(0);
    }
    println!("Successfully built {}", img.short_id());
    for t in &tags {
        println!(
            "Successfully tagged {}",
            gabang_content::reference::familiar(&t.tagged().unwrap_or_else(|| t.name()))
        );
    }
    Ok(0)
}
