//! The build driver: walks the stages a target needs (in dependency levels),
//! expands each instruction with docker's scoping rules, computes its cache
//! key (parent key + expanded instruction + build args in scope + content hash
//! of copied files), reuses a cached result or asks a [`StepExecutor`] to do
//! the work, and applies image-config effects. Every step that misses carries
//! a [`MissReason`] saying why.
//!
//! Variable scoping (docker's): ARGs before the first FROM are usable only in
//! FROM lines unless re-declared (without a value) inside a stage; ENV wins
//! over ARG of the same name; `--build-arg` overrides ARG defaults; the proxy
//! args (`HTTP_PROXY`, …) are usable in RUN without an ARG and are left out of
//! cache keys; `TARGETPLATFORM`/`BUILDPLATFORM` & co are predefined globals.

use crate::cache::{
    explain_miss, CacheEntry, CacheIndex, KeyInputs, LayerInfo, MissReason, StepRecord,
};
use crate::config::{ConfigState, ExtraConfig};
use crate::context::{copy_items, BuildContext, ContextEntry, ContextError, CopyItem};
use crate::error::{DockerfileError, Pos};
use crate::expand::{expand_heredoc, expand_word, ExpandError};
use crate::ignore::Dockerignore;
use crate::parser::{
    self, Command, CopyArgs, CopySource, Dockerfile, Instruction, InstructionKind, Word,
};
use crate::stages::{classify_ref, resolve_target, StageBase, StageGraph};
use oci_spec::image::{Arch, ImageConfiguration, Os};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// Build args docker accepts without an ARG line; excluded from cache keys.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The platform being built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The machine's own platform, in OCI names.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant: None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.variant {
            Some(v) => write!(f, "{}/{}/{}", self.os, self.arch, v),
            None => write!(f, "{}/{}", self.os, self.arch),
        }
    }
}

/// Parse `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> Option<Platform> {
    let mut it = s.split('/');
    let os = it.next().filter(|x| !x.is_empty())?;
    let arch = it.next().filter(|x| !x.is_empty())?;
    let variant = it.next().map(String::from);
    if it.next().is_some() {
        return None;
    }
    Some(Platform {
        os: os.into(),
        arch: arch.into(),
        variant,
    })
}

/// What `gabang build` was asked to do.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Identifies "the same Dockerfile" across builds (e.g. its absolute path),
    /// to compare with the previous build when explaining misses.
    pub dockerfile_id: String,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--label k=v`, added to the final image.
    pub labels: BTreeMap<String, String>,
    pub platform: Platform,
}

impl BuildOptions {
    pub fn new(dockerfile_id: &str) -> BuildOptions {
        BuildOptions {
            dockerfile_id: dockerfile_id.to_string(),
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            labels: BTreeMap::new(),
            platform: Platform::host(),
        }
    }
}

/// An opaque filesystem state (snapshot / chain id) owned by the executor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateId(pub String);

/// A resolved base image.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// Stable identity (manifest digest): part of cache keys.
    pub id: String,
    pub config: ImageConfiguration,
    pub extra: ExtraConfig,
    pub state: StateId,
}

/// A file made by the build itself (heredoc bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// Run a command in a container on top of `state`; the layer is the diff.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub stage: usize,
    pub cache_key: String,
    pub state: StateId,
    pub argv: Vec<String>,
    /// `K=V`: image ENV, then ARGs in scope not shadowed by ENV, then proxy args.
    pub env: Vec<String>,
    pub workdir: String,
    pub user: Option<String>,
    /// `--network=`, `--security=`, `--mount=` values as written.
    pub network: Option<String>,
    pub security: Option<String>,
    pub mounts: Vec<String>,
    /// Files the executor must make visible before running (heredoc scripts at `/dev/pipes/<name>`).
    pub files: Vec<InlineFile>,
}

/// Where COPY/ADD reads from.
#[derive(Debug, Clone)]
pub enum CopyFrom {
    /// The build context: items with their walked entries (same order).
    Context {
        root: PathBuf,
        items: Vec<CopyItem>,
        entries: Vec<Vec<ContextEntry>>,
    },
    /// Another stage's final filesystem, or an image's; `paths` as written (globs
    /// resolved by the executor inside that rootfs), `dest` absolute.
    State {
        state: StateId,
        paths: Vec<String>,
        dest: String,
    },
    /// Heredoc files (`dest` absolute paths inside).
    Inline { files: Vec<InlineFile> },
}

/// Copy files into a new layer on top of `state` (no container needed).
#[derive(Debug, Clone)]
pub struct CopyRequest {
    pub stage: usize,
    pub cache_key: String,
    pub state: StateId,
    pub from: CopyFrom,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// ADD: local tar archives are extracted at the destination.
    pub add: bool,
}

/// What a filesystem step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutput {
    pub state: StateId,
    /// None: nothing changed (no layer).
    pub layer: Option<LayerInfo>,
}

/// A failed step: message, exit code and the tail of its output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecError {
    pub message: String,
    pub exit_code: Option<i32>,
    pub output_tail: String,
}

/// Progress, for the CLI to print.
#[derive(Debug)]
pub enum Progress<'a> {
    Stage {
        stage: usize,
        name: Option<&'a str>,
        base: &'a str,
    },
    Step {
        stage: usize,
        step: usize,
        text: &'a str,
    },
    Cached {
        stage: usize,
        step: usize,
    },
    Miss {
        stage: usize,
        step: usize,
        reason: &'a MissReason,
    },
    Warning(&'a str),
    /// A step finished; `id` names its result (the step's cache key), like docker's
    /// ` ---> 1a2b3c4d5e6f` line.
    Done {
        stage: usize,
        step: usize,
        id: &'a str,
    },
}

/// The runtime and the content store plug in here. Methods take `&self` and
/// the executor is `Sync`: stages of one level build on parallel threads.
pub trait StepExecutor: Sync {
    /// Find an image (local store / registry) for the platform.
    fn resolve_image(&self, reference: &str, platform: &Platform) -> Result<BaseImage, ExecError>;
    /// The empty filesystem.
    fn scratch(&self) -> Result<StateId, ExecError>;
    fn run(&self, req: &RunRequest) -> Result<StepOutput, ExecError>;
    fn copy(&self, req: &CopyRequest) -> Result<StepOutput, ExecError>;
    /// WORKDIR: create the directory if missing (None = already there).
    fn mkdir_workdir(
        &self,
        state: &StateId,
        path: &str,
        user: Option<&str>,
    ) -> Result<Option<StepOutput>, ExecError>;
    /// Whether a cached state still exists (not pruned).
    fn has_state(&self, state: &StateId) -> bool;
    fn progress(&self, _event: &Progress<'_>) {}
}

/// One step as it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub stage: usize,
    pub step: usize,
    pub pos: Pos,
    /// Expanded instruction text.
    pub text: String,
    /// Filesystem steps only: whether the cache hit.
    pub cached: bool,
    /// Filesystem steps that missed: why.
    pub miss: Option<MissReason>,
    pub empty_layer: bool,
}

/// The finished image: config (+ docker extras), final state, and what happened.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub target: usize,
    pub levels: Vec<Vec<usize>>,
    pub config: ImageConfiguration,
    pub extra: ExtraConfig,
    pub state: StateId,
    pub final_key: String,
    pub steps: Vec<StepReport>,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    #[error("{file}:{pos}: {text}: {}{}{}", .error.message,
        .error.exit_code.map(|c| format!(" (exit code {c})")).unwrap_or_default(),
        if .error.output_tail.is_empty() { String::new() } else { format!("\n{}", .error.output_tail) })]
    Step {
        file: String,
        pos: Pos,
        text: String,
        error: ExecError,
    },
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
}

struct StageResult {
    cfg: ConfigState,
    state: StateId,
    key: String,
}

#[derive(Default)]
struct Shared {
    consumed: BTreeSet<String>,
    records: Vec<StepRecord>,
    steps: Vec<StepReport>,
    warnings: Vec<String>,
}

struct Builder<'a> {
    df: &'a Dockerfile,
    opts: &'a BuildOptions,
    ctx: Mutex<&'a mut BuildContext>,
    cache: Mutex<&'a mut CacheIndex>,
    exec: &'a dyn StepExecutor,
    global: BTreeMap<String, Option<String>>,
    prev: BTreeMap<(usize, usize), StepRecord>,
    shared: Mutex<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Expand a word; errors point at the word (plus the offset inside it).
fn expand_at(
    file: &str,
    w: &Word,
    escape: char,
    vars: &BTreeMap<String, String>,
) -> Result<String, DockerfileError> {
    expand_word(&w.text, escape, &mut |n| vars.get(n).cloned()).map_err(|e: ExpandError| {
        DockerfileError::new(
            file,
            Pos::new(w.pos.line, w.pos.col + e.offset as u32),
            e.message,
        )
    })
}

fn is_remote(src: &str) -> bool {
    let l = src.to_ascii_lowercase();
    l.starts_with("http://")
        || l.starts_with("https://")
        || l.starts_with("git@")
        || l.starts_with("git://")
}

fn argv_of(cmd: &Command, shell: &[String]) -> Vec<String> {
    match cmd {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => shell
            .iter()
            .cloned()
            .chain(std::iter::once(s.clone()))
            .collect(),
    }
}

/// Run a build. Saves the cache index and the stat cache at the end.
pub fn build(
    df: &Dockerfile,
    opts: &BuildOptions,
    ctx: &mut BuildContext,
    cache: &mut CacheIndex,
    exec: &dyn StepExecutor,
) -> Result<BuildResult, BuildError> {
    let prev = cache
        .last_build(&opts.dockerfile_id)
        .iter()
        .map(|r| ((r.stage, r.step), r.clone()))
        .collect();
    let mut b = Builder {
        df,
        opts,
        ctx: Mutex::new(ctx),
        cache: Mutex::new(cache),
        exec,
        global: BTreeMap::new(),
        prev,
        shared: Mutex::new(Shared::default()),
    };
    let result = b.run();
    // keep what was learnt even when a step failed
    b.ctx
        .get_mut()
        .unwrap_or_else(|e| e.into_inner())
        .save_stat_cache()?;
    let cache = b.cache.get_mut().unwrap_or_else(|e| e.into_inner());
    if result.is_ok() {
        let mut recs = std::mem::take(
            &mut b
                .shared
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .records,
        );
        recs.sort_by_key(|r| (r.stage, r.step));
        cache.set_last_build(&opts.dockerfile_id, recs);
    }
    cache.save()?;
    result
}

/// Only the stage graph part (no executor): target, needed stages and levels,
/// with FROM lines expanded using global ARGs and `--build-arg`s.
pub fn plan_stages(
    df: &Dockerfile,
    opts: &BuildOptions,
) -> Result<(usize, Vec<Vec<usize>>, StageGraph), DockerfileError> {
    let global = global_args(df, opts, &mut BTreeSet::new())?;
    let graph = stage_graph(df, &global)?;
    let target = resolve_target(df, opts.target.as_deref())?;
    let levels = graph.levels(target);
    Ok((target, levels, graph))
}

fn global_vars(global: &BTreeMap<String, Option<String>>) -> BTreeMap<String, String> {
    global
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect()
}

fn stage_graph(
    df: &Dockerfile,
    global: &BTreeMap<String, Option<String>>,
) -> Result<StageGraph, DockerfileError> {
    let vars = global_vars(global);
    StageGraph::new(df, &mut |_, w| {
        expand_at(&df.file, w, df.directives.escape, &vars)
    })
}

fn global_args(
    df: &Dockerfile,
    opts: &BuildOptions,
    consumed: &mut BTreeSet<String>,
) -> Result<BTreeMap<String, Option<String>>, DockerfileError> {
    let p = &opts.platform;
    let mut g: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (k, v) in [
        ("TARGETPLATFORM", p.to_string()),
        ("TARGETOS", p.os.clone()),
        ("TARGETARCH", p.arch.clone()),
        ("TARGETVARIANT", p.variant.clone().unwrap_or_default()),
        ("BUILDPLATFORM", Platform::host().to_string()),
        ("BUILDOS", Platform::host().os),
        ("BUILDARCH", Platform::host().arch),
        ("BUILDVARIANT", String::new()),
    ] {
        g.insert(k.to_string(), Some(v));
    }
    for decl in &df.global_args {
        let value = match opts.build_args.get(&decl.name) {
            Some(v) => {
                consumed.insert(decl.name.clone());
                Some(v.clone())
            }
            None => match &decl.default {
                Some(d) => Some(expand_at(
                    &df.file,
                    d,
                    df.directives.escape,
                    &global_vars(&g),
                )?),
                None => None,
            },
        };
        g.insert(decl.name.clone(), value);
    }
    Ok(g)
}

impl Builder<'_> {
    fn err(&self, pos: Pos, msg: impl Into<String>) -> DockerfileError {
        DockerfileError::new(&self.df.file, pos, msg)
    }

    fn run(&mut self) -> Result<BuildResult, BuildError> {
        for w in &self.df.warnings {
            let text = w.to_string();
            self.exec.progress(&Progress::Warning(&text));
            lock(&self.shared).warnings.push(text);
        }
        let mut consumed = BTreeSet::new();
        self.global = global_args(self.df, self.opts, &mut consumed)?;
        lock(&self.shared).consumed = consumed;
        let graph = stage_graph(self.df, &self.global)?;
        let target = resolve_target(self.df, self.opts.target.as_deref())?;
        let levels = graph.levels(target);
        let mut results: Vec<Option<StageResult>> =
            (0..self.df.stages.len()).map(|_| None).collect();
        for level in &levels {
            let this: &Builder<'_> = self;
            let built: Vec<(usize, Result<StageResult, BuildError>)> = if level.len() == 1 {
                level
                    .iter()
                    .map(|&s| (s, this.build_stage(s, &graph.base[s], &results)))
                    .collect()
            } else {
                // independent stages: one thread each
                let res = &results;
                let bases = &graph.base;
                std::thread::scope(|sc| {
                    let handles: Vec<_> = level
                        .iter()
                        .map(|&s| (s, sc.spawn(move || this.build_stage(s, &bases[s], res))))
                        .collect();
                    handles
                        .into_iter()
                        .map(|(s, h)| {
                            let r = h.join().unwrap_or_else(|_| {
                                Err(this
                                    .err(
                                        this.df.stages[s].pos,
                                        "internal error: the stage's build thread panicked",
                                    )
                                    .into())
                            });
                            (s, r)
                        })
                        .collect()
                })
            };
            for (s, r) in built {
                results[s] = Some(r?);
            }
        }
        let Some(mut fin) = results[target].take() else {
            return Err(self
                .err(Pos::new(1, 1), "target stage was not built")
                .into());
        };
        for (k, v) in &self.opts.labels {
            fin.cfg.set_label(k, v);
        }
        let unused: Vec<&String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| {
                !lock(&self.shared).consumed.contains(*k) && !PROXY_ARGS.contains(&k.as_str())
            })
            .collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            let w = format!(
                "one or more build-args [{}] were not consumed",
                names.join(" ")
            );
            self.exec.progress(&Progress::Warning(&w));
            lock(&self.shared).warnings.push(w);
        }
        let mut shared = lock(&self.shared);
        let mut steps = std::mem::take(&mut shared.steps);
        steps.sort_by_key(|s| (s.stage, s.step));
        let warnings = std::mem::take(&mut shared.warnings);
        drop(shared);
        fin.cfg.image.set_created(Some(
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ));
        Ok(BuildResult {
            target,
            levels,
            config: fin.cfg.image,
            extra: fin.cfg.extra,
            state: fin.state,
            final_key: fin.key,
            steps,
            warnings,
        })
    }

    fn exec_err(&self, ins_pos: Pos, text: &str, error: ExecError) -> BuildError {
        BuildError::Step {
            file: self.df.file.clone(),
            pos: ins_pos,
            text: text.to_string(),
            error,
        }
    }

    fn build_stage(
        &self,
        s: usize,
        base: &StageBase,
        results: &[Option<StageResult>],
    ) -> Result<StageResult, BuildError> {
        let df = self.df;
        let st = &df.stages[s];
        let esc = df.directives.escape;
        let base_text = expand_at(&df.file, &st.from.image, esc, &global_vars(&self.global))?;
        self.exec.progress(&Progress::Stage {
            stage: s,
            name: st.name.as_deref(),
            base: &base_text,
        });
        let (mut cfg, mut state, mut key, mut desc) = match base {
            StageBase::Scratch => {
                let mut img = ImageConfiguration::default();
                img.set_architecture(Arch::from(self.opts.platform.arch.as_str()));
                img.set_os(Os::from(self.opts.platform.os.as_str()));
                let state = self
                    .exec
                    .scratch()
                    .map_err(|e| self.exec_err(st.pos, "FROM scratch", e))?;
                (
                    ConfigState::new(img, ExtraConfig::default()),
                    state,
                    "scratch".to_string(),
                    "FROM scratch".to_string(),
                )
            }
            StageBase::Stage(j) => {
                let Some(r) = results.get(*j).and_then(|r| r.as_ref()) else {
                    return Err(self
                        .err(st.pos, format!("stage {j} was not built before stage {s}"))
                        .into());
                };
                let mut cfg = r.cfg.clone();
                cfg.cmd_set_here = false;
                (
                    cfg,
                    r.state.clone(),
                    r.key.clone(),
                    format!(
                        "FROM stage {}",
                        df.stages[*j].name.clone().unwrap_or_else(|| j.to_string())
                    ),
                )
            }
            StageBase::Image(r) => {
                let platform = match &st.from.platform {
                    Some(w) => {
                        let v = expand_at(&df.file, w, esc, &global_vars(&self.global))?;
                        parse_platform(&v).ok_or_else(|| {
                            self.err(w.pos, format!("invalid --platform=\"{v}\": expected os/arch[/variant], e.g. linux/amd64"))
                        })?
                    }
                    None => self.opts.platform.clone(),
                };
                let img = self
                    .exec
                    .resolve_image(r, &platform)
                    .map_err(|e| self.exec_err(st.from.image.pos, &format!("FROM {r}"), e))?;
                let desc = format!("FROM {r}@{}", img.id);
                (
                    ConfigState::new(img.config, img.extra),
                    img.state,
                    format!("image:{}", img.id),
                    desc,
                )
            }
        };
        // ONBUILD triggers of the base run first; the new image does not inherit them
        let triggers = std::mem::take(&mut cfg.extra.on_build);
        let mut instructions: Vec<Instruction> = Vec::new();
        for t in &triggers {
            let name = format!(
                "{}:{} (ONBUILD trigger of {base_text})",
                df.file, st.pos.line
            );
            let parsed = parser::parse(&name, &format!("FROM scratch\n{t}")).map_err(|mut e| {
                e.pos.line = e.pos.line.saturating_sub(1).max(1);
                e
            })?;
            for mut i in parsed.stages.into_iter().flat_map(|s| s.instructions) {
                i.pos = st.pos;
                instructions.push(i);
            }
        }
        instructions.extend(st.instructions.iter().cloned());

        let mut args: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut last_cause: Option<(String, MissReason)> = None;
        for (k, ins) in instructions.iter().enumerate() {
            let vars = {
                let mut v: BTreeMap<String, String> = args
                    .iter()
                    .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                    .collect();
                for (k, val) in cfg.env() {
                    v.insert(k, val);
                }
                v
            };
            let ex = |w: &Word| expand_at(&df.file, w, esc, &vars);
            let short: String = ins
                .text
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(60)
                .collect();
            let step_desc = format!("{}:{} {}", df.file, ins.pos.line, short);

            // ARG changes no key by itself: the args in scope enter RUN keys
            if let InstructionKind::Arg(decls) = &ins.kind {
                for d in decls {
                    let value = if let Some(v) = self.opts.build_args.get(&d.name) {
                        lock(&self.shared).consumed.insert(d.name.clone());
                        Some(v.clone())
                    } else if let Some(def) = &d.default {
                        Some(ex(def)?)
                    } else {
                        self.global.get(&d.name).cloned().flatten()
                    };
                    args.insert(d.name.clone(), value);
                }
                continue;
            }

            let mut inputs = KeyInputs {
                parent: key.clone(),
                parent_desc: desc.clone(),
                instruction: String::new(),
                args: BTreeMap::new(),
                files_digest: None,
                files: BTreeMap::new(),
                platform: self.opts.platform.to_string(),
            };
            // metadata effects; `fs` = Some(work) for filesystem steps
            enum Fs {
                Run(RunRequest),
                Copy(CopyRequest),
                Workdir(String),
            }
            let mut fs: Option<Fs> = None;
            let created_by: String;
            match &ins.kind {
                InstructionKind::Env(kvs) => {
                    let mut parts = Vec::new();
                    for kv in kvs {
                        let (k2, v2) = (ex(&kv.key)?, ex(&kv.value)?);
                        parts.push(format!("{k2}={v2}"));
                        cfg.set_env(&k2, &v2);
                    }
                    created_by = format!("ENV {}", parts.join(" "));
                }
                InstructionKind::Label(kvs) => {
                    let mut parts = Vec::new();
                    for kv in kvs {
                        let (k2, v2) = (ex(&kv.key)?, ex(&kv.value)?);
                        parts.push(format!("{k2}={v2}"));
                        cfg.set_label(&k2, &v2);
                    }
                    created_by = format!("LABEL {}", parts.join(" "));
                }
                InstructionKind::Cmd(c) => {
                    let argv = argv_of(c, &cfg.extra.shell_or_default());
                    created_by =
                        format!("CMD {}", serde_json::to_string(&argv).unwrap_or_default());
                    cfg.set_cmd(argv);
                }
                InstructionKind::Entrypoint(c) => {
                    let argv = argv_of(c, &cfg.extra.shell_or_default());
                    created_by = format!(
                        "ENTRYPOINT {}",
                        serde_json::to_string(&argv).unwrap_or_default()
                    );
                    cfg.set_entrypoint(argv);
                }
                InstructionKind::Expose(ws) => {
                    let mut all = Vec::new();
                    for w in ws {
                        let v = ex(w)?;
                        for p in v.split_whitespace() {
                            all.extend(cfg.expose(p).map_err(|e| self.err(w.pos, e.0))?);
                        }
                    }
                    created_by = format!("EXPOSE {}", all.join(" "));
                }
                InstructionKind::Workdir(w) => {
                    let v = ex(w)?;
                    let dir = cfg.set_workdir(&v);
                    created_by = format!("WORKDIR {dir}");
                    fs = Some(Fs::Workdir(dir));
                }
                InstructionKind::User(w) => {
                    let v = ex(w)?;
                    if v.is_empty() {
                        return Err(self
                            .err(
                                w.pos,
                                "USER expands to an empty string: expected USER <user>[:<group>]",
                            )
                            .into());
                    }
                    cfg.set_user(&v);
                    created_by = format!("USER {v}");
                }
                InstructionKind::Volume(ws) => {
                    let mut all = Vec::new();
                    for w in ws {
                        let v = ex(w)?;
                        if v.trim().is_empty() {
                            return Err(self
                                .err(w.pos, "VOLUME specified can not be an empty string")
                                .into());
                        }
                        cfg.add_volume(&v);
                        all.push(v);
                    }
                    created_by =
                        format!("VOLUME {}", serde_json::to_string(&all).unwrap_or_default());
                }
                InstructionKind::Shell(v) => {
                    cfg.set_shell(v.clone());
                    created_by = format!("SHELL {}", serde_json::to_string(v).unwrap_or_default());
                }
                InstructionKind::Stopsignal(w) => {
                    let v = ex(w)?;
                    cfg.set_stopsignal(&v).map_err(|e| self.err(w.pos, e.0))?;
                    created_by = format!("STOPSIGNAL {v}");
                }
                InstructionKind::Healthcheck(h) => {
                    cfg.set_healthcheck(h);
                    created_by = format!("HEALTHCHECK {}", ins.args_text);
                }
                InstructionKind::Onbuild(inner) => {
                    cfg.add_onbuild(&inner.text);
                    created_by = format!("ONBUILD {}", inner.text);
                }
                InstructionKind::Maintainer(w) => {
                    cfg.set_author(&w.text);
                    created_by = format!("MAINTAINER {}", w.text);
                }
                InstructionKind::Run(r) => {
                    let shell = cfg.extra.shell_or_default();
                    let mut files = Vec::new();
                    let argv = match &r.command {
                        Command::Exec(v) => v.clone(),
                        Command::Shell(text)
                            if r.heredocs.len() == 1
                                && parser::parse_heredoc_word(text.trim(), esc).is_some() =>
                        {
                            // `RUN <<EOF`: the body is the script
                            let h = &r.heredocs[0];
                            if h.content.starts_with("#!") {
                                let path = format!("/dev/pipes/{}", h.name);
                                files.push(InlineFile {
                                    path: path.clone(),
                                    content: h.content.clone().into_bytes(),
                                    mode: 0o755,
                                });
                                vec![path]
                            } else {
                                shell
                                    .iter()
                                    .cloned()
                                    .chain(std::iter::once(h.content.clone()))
                                    .collect()
                            }
                        }
                        Command::Shell(text) => {
                            let mut script = text.clone();
                            for h in &r.heredocs {
                                script.push('\n');
                                script.push_str(&h.content);
                                script.push_str(&h.name);
                            }
                            shell
                                .iter()
                                .cloned()
                                .chain(std::iter::once(script))
                                .collect()
                        }
                    };
                    let env_names: BTreeSet<String> =
                        cfg.env().into_iter().map(|(k, _)| k).collect();
                    let mut env: Vec<String> = cfg
                        .env()
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    for (k, v) in &args {
                        if let (Some(v), false) = (v, env_names.contains(k)) {
                            env.push(format!("{k}={v}"));
                            if !PROXY_ARGS.contains(&k.as_str()) {
                                inputs.args.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    for p in PROXY_ARGS {
                        if let (Some(v), false) =
                            (self.opts.build_args.get(p), args.contains_key(p))
                        {
                            env.push(format!("{p}={v}"));
                        }
                    }
                    let flag = |n: &str| {
                        r.flags
                            .iter()
                            .find(|f| f.name == n)
                            .and_then(|f| f.value.as_ref())
                            .map(|v| v.text.clone())
                    };
                    let mounts = r
                        .flags
                        .iter()
                        .filter(|f| f.name == "mount")
                        .filter_map(|f| f.value.as_ref())
                        .map(|v| v.text.clone())
                        .collect();
                    created_by = format!("RUN {} # buildkit", argv.join(" "));
                    fs = Some(Fs::Run(RunRequest {
                        stage: s,
                        cache_key: String::new(),
                        state: state.clone(),
                        argv,
                        env,
                        workdir: cfg.workdir(),
                        user: cfg.user(),
                        network: flag("network"),
                        security: flag("security"),
                        mounts,
                        files,
                    }));
                }
                InstructionKind::Copy(c) | InstructionKind::Add(c) => {
                    let add = matches!(ins.kind, InstructionKind::Add(_));
                    let (req, text) =
                        self.plan_copy(s, ins, c, add, &vars, &cfg, &state, results, &mut inputs)?;
                    created_by = format!("{text} # buildkit");
                    fs = Some(Fs::Copy(req));
                }
                InstructionKind::Arg(_) | InstructionKind::From(_) => continue,
            }
            inputs.instruction = created_by.trim_end_matches(" # buildkit").to_string();
            if let Some(Fs::Run(_)) = &fs {
                inputs.instruction = format!(
                    "RUN {}",
                    ins.text
                        .trim_start_matches(|c: char| !c.is_whitespace())
                        .trim_start()
                );
                if let InstructionKind::Run(r) = &ins.kind {
                    if !r.flags.is_empty() {
                        let fl: Vec<String> = r
                            .flags
                            .iter()
                            .map(|f| {
                                format!(
                                    "--{}={}",
                                    f.name,
                                    f.value.as_ref().map(|v| v.text.as_str()).unwrap_or("")
                                )
                            })
                            .collect();
                        inputs.instruction.push_str(&format!(" [{}]", fl.join(" ")));
                    }
                }
            }
            let step_key = inputs.key();
            // compare with the same slot, or (when lines were inserted or removed)
            // with the nearest previous step of this stage that had the same text
            let slot = self.prev.get(&(s, k));
            let prev = match slot {
                Some(p) if p.inputs.instruction == inputs.instruction => slot,
                _ => self
                    .prev
                    .values()
                    .filter(|r| r.stage == s && r.inputs.instruction == inputs.instruction)
                    .min_by_key(|r| r.step.abs_diff(k))
                    .or(slot),
            };
            let changed = match prev {
                Some(p) if p.key == step_key => None,
                _ => Some(explain_miss(
                    prev,
                    &inputs,
                    last_cause.as_ref().map(|(d, r)| (d.as_str(), r)),
                )),
            };
            self.exec.progress(&Progress::Step {
                stage: s,
                step: k,
                text: &inputs.instruction,
            });
            let mut report = StepReport {
                stage: s,
                step: k,
                pos: ins.pos,
                text: inputs.instruction.clone(),
                cached: false,
                miss: None,
                empty_layer: true,
            };
            if let Some(work) = fs {
                let hit = if self.opts.no_cache {
                    None
                } else {
                    lock(&self.cache)
                        .get(&step_key)
                        .cloned()
                        .filter(|e| self.exec.has_state(&StateId(e.state.clone())))
                };
                let out = match hit {
                    Some(e) => {
                        report.cached = true;
                        self.exec.progress(&Progress::Cached { stage: s, step: k });
                        StepOutput {
                            state: StateId(e.state),
                            layer: e.layer,
                        }
                    }
                    None => {
                        let reason = if self.opts.no_cache {
                            MissReason::NoCache
                        } else {
                            changed.clone().unwrap_or(MissReason::ResultMissing)
                        };
                        self.exec.progress(&Progress::Miss {
                            stage: s,
                            step: k,
                            reason: &reason,
                        });
                        report.miss = Some(reason);
                        let res = match work {
                            Fs::Run(mut req) => {
                                req.cache_key = step_key.clone();
                                self.exec.run(&req)
                            }
                            Fs::Copy(mut req) => {
                                req.cache_key = step_key.clone();
                                self.exec.copy(&req)
                            }
                            Fs::Workdir(dir) => {
                                let user = cfg.user();
                                self.exec
                                    .mkdir_workdir(&state, &dir, user.as_deref())
                                    .map(|o| {
                                        o.unwrap_or(StepOutput {
                                            state: state.clone(),
                                            layer: None,
                                        })
                                    })
                            }
                        };
                        let out = res.map_err(|e| self.exec_err(ins.pos, &short, e))?;
                        lock(&self.cache).insert(
                            &step_key,
                            CacheEntry {
                                state: out.state.0.clone(),
                                layer: out.layer.clone(),
                                created_by: created_by.clone(),
                            },
                        );
                        out
                    }
                };
                state = out.state;
                if let Some(layer) = &out.layer {
                    cfg.image
                        .rootfs_mut()
                        .diff_ids_mut()
                        .push(layer.diff_id.clone());
                    report.empty_layer = false;
                }
            }
            cfg.history(&created_by, report.empty_layer);
            last_cause = match changed {
                None => None,
                Some(MissReason::ParentChanged { .. }) => last_cause,
                Some(r) => Some((step_desc, r)),
            };
            lock(&self.shared).records.push(StepRecord {
                stage: s,
                step: k,
                key: step_key.clone(),
                inputs,
            });
            lock(&self.shared).steps.push(report);
            self.exec.progress(&Progress::Done {
                stage: s,
                step: k,
                id: step_key.strip_prefix("sha256:").unwrap_or(&step_key),
            });
            key = step_key;
            desc = format!("{}:{}", df.file, ins.pos.line);
        }
        cfg.cmd_set_here = false;
        Ok(StageResult { cfg, state, key })
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_copy(
        &self,
        s: usize,
        ins: &Instruction,
        c: &CopyArgs,
        add: bool,
        vars: &BTreeMap<String, String>,
        cfg: &ConfigState,
        state: &StateId,
        results: &[Option<StageResult>],
        inputs: &mut KeyInputs,
    ) -> Result<(CopyRequest, String), BuildError> {
        let df = self.df;
        let esc = df.directives.escape;
        let ex = |w: &Word| expand_at(&df.file, w, esc, vars);
        let kw = if add { "ADD" } else { "COPY" };
        for f in &c.flags {
            if matches!(f.name.as_str(), "parents" | "keep-git-dir" | "checksum") {
                return Err(self
                    .err(
                        f.pos,
                        format!("{kw} --{} is not supported by gabang build yet", f.name),
                    )
                    .into());
            }
        }
        let chown = c.chown.as_ref().map(ex).transpose()?;
        let chmod = c.chmod.as_ref().map(ex).transpose()?;
        if let (Some(m), Some(w)) = (&chmod, &c.chmod) {
            if u32::from_str_radix(m, 8).map_or(true, |v| v > 0o7777) {
                return Err(self
                    .err(
                        w.pos,
                        format!("invalid --chmod=\"{m}\": expected an octal mode like 0755"),
                    )
                    .into());
            }
        }
        let dest = ex(&c.dest)?;
        let workdir = cfg.workdir();
        let mut text = kw.to_string();
        let from = c
            .from
            .as_ref()
            .map(|w| ex(w).map(|v| (v, w.pos)))
            .transpose()?;
        if let Some((f, _)) = &from {
            text.push_str(&format!(" --from={f}"));
        }
        if let Some(v) = &chown {
            text.push_str(&format!(" --chown={v}"));
        }
        if let Some(v) = &chmod {
            text.push_str(&format!(" --chmod={v}"));
        }
        if c.link {
            text.push_str(" --link");
        }
        let mut paths = Vec::new();
        let mut inline = Vec::new();
        let abs_dest = if dest.starts_with('/') {
            dest.clone()
        } else {
            format!("{}/{}", workdir.trim_end_matches('/'), dest)
        };
        for src in &c.sources {
            match src {
                CopySource::Path(w) => {
                    let v = ex(w)?;
                    if is_remote(&v) {
                        if add {
                            return Err(self.err(w.pos, format!("ADD {v}: remote sources are not supported: this build runs offline; download the file into the build context and COPY it")).into());
                        }
                        return Err(self
                            .err(
                                w.pos,
                                format!(
                                    "COPY {v}: COPY takes paths in the build context, not URLs"
                                ),
                            )
                            .into());
                    }
                    text.push(' ');
                    text.push_str(&v);
                    paths.push((v, w.pos));
                }
                CopySource::Heredoc(h) => {
                    let body = if h.expand {
                        expand_heredoc(&h.content, esc, &mut |n| vars.get(n).cloned()).map_err(
                            |e| self.err(h.pos, format!("in heredoc <<{}: {}", h.name, e.message)),
                        )?
                    } else {
                        h.content.clone()
                    };
                    let path = if dest.ends_with('/') || c.sources.len() > 1 {
                        format!("{}/{}", abs_dest.trim_end_matches('/'), h.name)
                    } else {
                        abs_dest.clone()
                    };
                    text.push_str(&format!(" <<{}", h.name));
                    inline.push(InlineFile {
                        path,
                        content: body.into_bytes(),
                        mode: 0o644,
                    });
                }
            }
        }
        text.push(' ');
        text.push_str(&dest);
        if !inline.is_empty() {
            let mut h = sha2::Sha256::new();
            use sha2::Digest;
            for f in &inline {
                h.update(f.path.as_bytes());
                h.update([0]);
                h.update(&f.content);
                h.update([0]);
            }
            inputs.files_digest = Some(format!("sha256:{}", hex::encode(h.finalize())));
            if !paths.is_empty() {
                return Err(self
                    .err(
                        ins.pos,
                        format!(
                            "{kw} mixes heredocs and paths: expected only heredocs or only paths"
                        ),
                    )
                    .into());
            }
            let req = CopyRequest {
                stage: s,
                cache_key: String::new(),
                state: state.clone(),
                from: CopyFrom::Inline { files: inline },
                chown,
                chmod,
                link: c.link,
                add: false,
            };
            return Ok((req, text));
        }
        let from_state = match &from {
            None => None,
            Some((f, pos)) => match classify_ref(df, s, f, true, *pos)? {
                StageBase::Stage(j) => {
                    let Some(r) = results.get(j).and_then(|r| r.as_ref()) else {
                        return Err(self.err(*pos, format!("--from={f}: stage was not built")).into());
                    };
                    inputs.files_digest = Some(format!("stage:{}", r.key));
                    Some(r.state.clone())
                }
                StageBase::Scratch => return Err(self.err(*pos, "--from=scratch: scratch has no files to copy: expected a stage name, index or image").into()),
                StageBase::Image(r) => {
                    let img = self.exec.resolve_image(&r, &self.opts.platform).map_err(|e| self.exec_err(*pos, &format!("--from={r}"), e))?;
                    inputs.files_digest = Some(format!("image:{}", img.id));
                    Some(img.state)
                }
            },
        };
        if let Some(st) = from_state {
            if paths.len() > 1 && !dest.ends_with('/') {
                return Err(self.err(c.dest.pos, format!("when using {kw} with more than one source file, the destination must be a directory and end with a /: \"{dest}\"")).into());
            }
            let req = CopyRequest {
                stage: s,
                cache_key: String::new(),
                state: state.clone(),
                from: CopyFrom::State {
                    state: st,
                    paths: paths.into_iter().map(|p| p.0).collect(),
                    dest: abs_dest,
                },
                chown,
                chmod,
                link: c.link,
                add,
            };
            return Ok((req, text));
        }
        let mut resolved = Vec::new();
        for (p, pos) in &paths {
            let r = lock(&self.ctx)
                .resolve_sources(std::slice::from_ref(p))
                .map_err(|e| self.err(*pos, format!("{kw} failed: {e}")))?;
            resolved.extend(r);
        }
        // --exclude: patterns (dockerignore syntax) against paths inside each source
        let mut excludes = Vec::new();
        for f in c.flags.iter().filter(|f| f.name == "exclude") {
            if let Some(w) = &f.value {
                excludes.push((ex(w)?, w.pos));
            }
        }
        let exclude = match excludes.first() {
            None => Dockerignore::default(),
            Some((_, pos)) => {
                let pats: Vec<&str> = excludes.iter().map(|(p, _)| p.as_str()).collect();
                Dockerignore::from_patterns(&pats).map_err(|e| {
                    self.err(*pos, format!("invalid --exclude pattern: {}", e.reason))
                })?
            }
        };
        if !exclude.is_empty() {
            resolved.retain(|r| {
                let base = r.path.rsplit('/').next().unwrap_or(&r.path);
                r.path == "." || !(exclude.is_excluded(base) || exclude.is_excluded(&r.path))
            });
            if resolved.is_empty() {
                return Err(self
                    .err(
                        ins.pos,
                        format!("{kw} failed: every source is excluded by --exclude"),
                    )
                    .into());
            }
        }
        let items =
            copy_items(&resolved, &dest, &workdir, kw).map_err(|e| self.err(c.dest.pos, e))?;
        let (hash, entries) = lock(&self.ctx)
            .hash_sources_excluding(&resolved, &exclude)
            .map_err(|e| self.err(ins.pos, format!("{kw} failed: {e}")))?;
        inputs.files_digest = Some(hash.digest);
        inputs.files = hash.files;
        let req = CopyRequest {
            stage: s,
            cache_key: String::new(),
            state: state.clone(),
            from: CopyFrom::Context {
                root: lock(&self.ctx).root().to_path_buf(),
                items,
                entries,
            },
            chown,
            chmod,
            link: c.link,
            add,
        };
        Ok((req, text))
    }
}
