//! The build driver against a recording executor: stage selection, ARG/ENV
//! scoping, config effects, cache hits, and why a step missed.

use gabang_build::cache::{CacheIndex, LayerInfo, MissReason};
use gabang_build::config::ExtraConfig;
use gabang_build::context::{BuildContext, StatCache};
use gabang_build::plan::*;
use gabang_build::{parse, BuildError};
use oci_spec::image::{Config, ImageConfiguration};
use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
struct Fake {
    inner: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    states: HashSet<String>,
    runs: Vec<RunRequest>,
    copies: Vec<CopyRequest>,
    workdirs: Vec<String>,
    events: Vec<String>,
    n: usize,
}

impl Fake {
    fn st(&self) -> MutexGuard<'_, FakeState> {
        self.inner.lock().unwrap()
    }
}

impl FakeState {
    fn new_state(&mut self, key: &str) -> StepOutput {
        self.n += 1;
        let s = format!("state-{}", self.n);
        self.states.insert(s.clone());
        StepOutput {
            state: StateId(s),
            layer: Some(LayerInfo {
                diff_id: format!("sha256:diff-of-{}", &key[7..19]),
                blob_digest: None,
                size: 1,
            }),
        }
    }
}

impl StepExecutor for Fake {
    fn resolve_image(&self, reference: &str, _p: &Platform) -> Result<BaseImage, ExecError> {
        let mut cfg = Config::default();
        cfg.set_env(Some(vec![
            "PATH=/usr/bin:/bin".into(),
            "BASEVAR=frombase".into(),
        ]));
        cfg.set_cmd(Some(vec!["sh".into()]));
        let mut img = ImageConfiguration::default();
        img.set_config(Some(cfg));
        img.rootfs_mut().diff_ids_mut().push("sha256:base".into());
        let mut extra = ExtraConfig::default();
        match reference {
            "busybox" | "busybox:1.36" | "alpine" => {}
            "onbuild-base" => {
                extra.on_build = vec!["ENV TRIGGERED=yes".into(), "RUN echo from-trigger".into()]
            }
            _ => {
                return Err(ExecError {
                    message: format!("image {reference} not found: import or pull it first"),
                    ..Default::default()
                })
            }
        }
        self.st().states.insert(format!("img-{reference}"));
        Ok(BaseImage {
            id: format!("sha256:{reference}-v1"),
            config: img,
            extra,
            state: StateId(format!("img-{reference}")),
        })
    }
    fn scratch(&self) -> Result<StateId, ExecError> {
        self.st().states.insert("scratch".into());
        Ok(StateId("scratch".into()))
    }
    fn run(&self, req: &RunRequest) -> Result<StepOutput, ExecError> {
        self.st().runs.push(req.clone());
        if req.argv.iter().any(|a| a.contains("exit 3")) {
            return Err(ExecError {
                message: "command failed".into(),
                exit_code: Some(3),
                output_tail: "make: *** [all] Error 3".into(),
            });
        }
        Ok(self.st().new_state(&req.cache_key))
    }
    fn copy(&self, req: &CopyRequest) -> Result<StepOutput, ExecError> {
        self.st().copies.push(req.clone());
        Ok(self.st().new_state(&req.cache_key))
    }
    fn mkdir_workdir(
        &self,
        _s: &StateId,
        path: &str,
        _u: Option<&str>,
    ) -> Result<Option<StepOutput>, ExecError> {
        self.st().workdirs.push(path.to_string());
        Ok(None)
    }
    fn has_state(&self, state: &StateId) -> bool {
        self.st().states.contains(&state.0)
    }
    fn progress(&self, e: &Progress<'_>) {
        let line = match e {
            Progress::Miss { step, reason, .. } => format!("miss {step}: {reason}"),
            Progress::Cached { step, .. } => format!("cached {step}"),
            Progress::Warning(w) => format!("warning: {w}"),
            Progress::Stage { stage, base, .. } => format!("stage {stage} from {base}"),
            Progress::Step { .. } | Progress::Done { .. } => return,
        };
        self.st().events.push(line);
    }
}

struct Env {
    ctx_dir: tempfile::TempDir,
    state_dir: tempfile::TempDir,
    fake: Fake,
}

impl Env {
    fn new() -> Env {
        let ctx_dir = tempfile::tempdir().unwrap();
        let r = ctx_dir.path();
        fs::create_dir_all(r.join("src")).unwrap();
        fs::write(r.join("src/main.rs"), "fn main() {}").unwrap();
        fs::write(r.join("src/lib.rs"), "// lib").unwrap();
        fs::write(r.join("README.md"), "readme").unwrap();
        Env {
            ctx_dir,
            state_dir: tempfile::tempdir().unwrap(),
            fake: Fake::default(),
        }
    }

    fn root(&self) -> &Path {
        self.ctx_dir.path()
    }

    fn build(&mut self, dockerfile: &str, opts: &BuildOptions) -> Result<BuildResult, BuildError> {
        let df = parse("Dockerfile", dockerfile)?;
        let mut ctx = BuildContext::open(
            self.ctx_dir.path(),
            StatCache::load(&self.state_dir.path().join("stat.json")),
        )?;
        let mut cache = CacheIndex::load(&self.state_dir.path().join("cache.json"));
        self.fake.st().events.clear();
        build(&df, opts, &mut ctx, &mut cache, &self.fake)
    }
}

fn opts() -> BuildOptions {
    let mut o = BuildOptions::new("/ctx/Dockerfile");
    o.platform = Platform {
        os: "linux".into(),
        arch: "amd64".into(),
        variant: None,
    };
    o
}

fn env_of(r: &BuildResult) -> Vec<String> {
    r.config
        .config()
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default()
}

#[test]
fn multi_stage_target_skips_unneeded_and_levels_parallel() {
    let mut e = Env::new();
    let df = "FROM busybox AS a\nRUN echo a\nFROM busybox AS b\nRUN echo b\nFROM busybox AS unused\nRUN echo unused\nFROM a AS c\nCOPY --from=b /x /y\nFROM scratch\nCOPY --from=c /y /z\nCOPY --from=1 /x /w\n";
    let r = e.build(df, &opts()).unwrap();
    assert_eq!(r.target, 4);
    assert_eq!(r.levels, vec![vec![0, 1], vec![3], vec![4]]);
    assert!(!e
        .fake
        .st()
        .runs
        .iter()
        .any(|r| r.argv.join(" ").contains("unused")));
    let mut o = opts();
    o.target = Some("b".into());
    let r = e.build(df, &o).unwrap();
    assert_eq!(r.levels, vec![vec![1]]);
    o.target = Some("nope".into());
    let err = e.build(df, &o).unwrap_err();
    assert_eq!(err.to_string(), "Dockerfile:1:1: target stage \"nope\" could not be found: expected one of [a, b, unused, c] or an index below 5");
}

#[test]
fn arg_and_env_scoping() {
    let mut e = Env::new();
    let df = r#"ARG BASE=busybox
ARG GLOBAL=g
FROM ${BASE}
ARG GLOBAL
ARG LOCAL=l-${GLOBAL}
ARG NOVAL
ENV FROM_ARG=${LOCAL} SHADOW=env
ARG SHADOW=arg
ENV SEE_SHADOW=$SHADOW UNSET=${NOVAL:-dflt} BASE_SEEN=${BASE:-not-visible}
RUN echo hi
FROM busybox AS second
ENV G=${GLOBAL:-invisible} TP=${TARGETPLATFORM:-none}
ARG TARGETPLATFORM
ENV TP2=$TARGETPLATFORM
"#;
    let mut o = opts();
    o.target = Some("0".into());
    o.build_args.insert("GLOBAL".into(), "override".into());
    o.build_args.insert("UNUSED_ARG".into(), "x".into());
    o.build_args
        .insert("HTTP_PROXY".into(), "http://proxy:3128".into());
    let r = e.build(df, &o).unwrap();
    let env = env_of(&r);
    for want in [
        "FROM_ARG=l-override",
        "SHADOW=env",
        "SEE_SHADOW=env",
        "UNSET=dflt",
        "BASE_SEEN=not-visible",
        "BASEVAR=frombase",
    ] {
        assert!(env.contains(&want.to_string()), "missing {want} in {env:?}");
    }
    let run = e.fake.st().runs.last().unwrap().clone();
    assert!(
        run.env.contains(&"LOCAL=l-override".to_string()),
        "{:?}",
        run.env
    );
    assert!(run.env.contains(&"GLOBAL=override".to_string()));
    assert!(run
        .env
        .contains(&"HTTP_PROXY=http://proxy:3128".to_string()));
    assert!(
        !run.env.contains(&"SHADOW=arg".to_string()),
        "ENV wins over ARG"
    );
    assert_eq!(
        r.warnings,
        vec!["one or more build-args [UNUSED_ARG] were not consumed".to_string()]
    );
    assert!(e
        .fake
        .st()
        .events
        .iter()
        .any(|s| s == "warning: one or more build-args [UNUSED_ARG] were not consumed"));

    o.target = Some("second".into());
    let r = e.build(df, &o).unwrap();
    let env = env_of(&r);
    assert!(
        env.contains(&"G=invisible".to_string()),
        "global ARG not visible without redeclaring: {env:?}"
    );
    assert!(env.contains(&"TP=none".to_string()));
    assert!(env.contains(&"TP2=linux/amd64".to_string()));
}

#[test]
fn config_effects_and_history() {
    let mut e = Env::new();
    let df = r#"FROM busybox
ENTRYPOINT ["/app"]
WORKDIR /srv
WORKDIR data
USER app:staff
EXPOSE 80 53/udp 8000-8002
VOLUME /v1 ["/v2"]
VOLUME ["/v3", "/v4"]
LABEL a=1 "b c"="d e"
SHELL ["/bin/bash", "-c"]
CMD echo $HOME
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --retries=2 CMD curl -f http://localhost/
ONBUILD RUN make
MAINTAINER someone
RUN echo done
"#;
    let mut o = opts();
    o.labels.insert("from-cli".into(), "yes".into());
    let r = e.build(df, &o).unwrap();
    let c = r.config.config().clone().unwrap();
    assert_eq!(c.entrypoint().clone(), Some(vec!["/app".to_string()]));
    assert_eq!(
        c.cmd().clone(),
        Some(vec![
            "/bin/bash".to_string(),
            "-c".into(),
            "echo $HOME".into()
        ])
    );
    assert_eq!(c.working_dir().as_deref(), Some("/srv/data"));
    assert_eq!(c.user().as_deref(), Some("app:staff"));
    assert_eq!(
        c.exposed_ports().clone().unwrap(),
        vec!["80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        c.volumes().clone().unwrap(),
        vec!["/v1", "[/v2]", "/v3", "/v4"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    );
    let labels = c.labels().clone().unwrap();
    assert_eq!(labels.get("a").map(String::as_str), Some("1"));
    assert_eq!(labels.get("b c").map(String::as_str), Some("d e"));
    assert_eq!(labels.get("from-cli").map(String::as_str), Some("yes"));
    assert_eq!(c.stop_signal().as_deref(), Some("SIGQUIT"));
    let hc = r.extra.healthcheck.clone().unwrap();
    assert_eq!(
        hc.test,
        vec!["CMD-SHELL".to_string(), "curl -f http://localhost/".into()]
    );
    assert_eq!((hc.interval, hc.retries), (Some(30_000_000_000), Some(2)));
    assert_eq!(
        r.extra.shell.clone().unwrap(),
        vec!["/bin/bash".to_string(), "-c".into()]
    );
    assert_eq!(r.extra.on_build, vec!["RUN make".to_string()]);
    assert_eq!(r.config.author().as_deref(), Some("someone"));
    assert_eq!(
        e.fake.st().workdirs,
        vec!["/srv".to_string(), "/srv/data".into()]
    );
    // the RUN used the SHELL, the WORKDIR and the USER
    let run = e.fake.st().runs.last().unwrap().clone();
    assert_eq!(
        run.argv,
        vec!["/bin/bash".to_string(), "-c".into(), "echo done".into()]
    );
    assert_eq!(
        (run.workdir.as_str(), run.user.as_deref()),
        ("/srv/data", Some("app:staff"))
    );
    // history: one entry per instruction, only RUN has a layer
    let hist = r.config.history().clone().unwrap();
    assert_eq!(hist.len(), 15);
    let layered: Vec<_> = hist
        .iter()
        .filter(|h| h.empty_layer() != Some(true))
        .map(|h| h.created_by().clone().unwrap())
        .collect();
    assert_eq!(
        layered,
        vec!["RUN /bin/bash -c echo done # buildkit".to_string()]
    );
    assert_eq!(r.config.rootfs().diff_ids().len(), 2);
    // the merged JSON carries docker's extra fields
    let j = gabang_build::config::config_json(&r.config, &r.extra);
    assert_eq!(j["config"]["Healthcheck"]["Test"][0], "CMD-SHELL");
    assert_eq!(j["config"]["Shell"][0], "/bin/bash");
    assert_eq!(j["config"]["OnBuild"][0], "RUN make");
    assert_eq!(j["config"]["ExposedPorts"]["80/tcp"], serde_json::json!({}));
}

#[test]
fn entrypoint_resets_inherited_cmd_but_not_own() {
    let mut e = Env::new();
    let r = e
        .build("FROM busybox\nENTRYPOINT [\"/x\"]\n", &opts())
        .unwrap();
    assert_eq!(r.config.config().clone().unwrap().cmd().clone(), None);
    let r = e
        .build("FROM busybox\nCMD [\"a\"]\nENTRYPOINT [\"/x\"]\n", &opts())
        .unwrap();
    assert_eq!(
        r.config.config().clone().unwrap().cmd().clone(),
        Some(vec!["a".to_string()])
    );
}

#[test]
fn cache_hits_and_miss_explanations() {
    let mut e = Env::new();
    let df =
        "FROM busybox\nARG V=1\nCOPY src/ /app/src/\nRUN make\nCOPY README.md /app/\nRUN echo $V\n";
    let r1 = e.build(df, &opts()).unwrap();
    let fs_steps: Vec<_> = r1
        .steps
        .iter()
        .filter(|s| s.miss.is_some() || s.cached)
        .collect();
    assert_eq!(fs_steps.len(), 4);
    assert!(fs_steps
        .iter()
        .all(|s| s.miss == Some(MissReason::NotBuiltBefore)));

    // no-op rebuild: everything cached, nothing executed
    let runs_before = e.fake.st().runs.len();
    let r2 = e.build(df, &opts()).unwrap();
    assert!(r2.steps.iter().filter(|s| !s.empty_layer).all(|s| s.cached));
    assert_eq!(e.fake.st().runs.len(), runs_before);
    assert_eq!(r1.final_key, r2.final_key);
    assert_eq!(r1.config.rootfs().diff_ids(), r2.config.rootfs().diff_ids());

    // one source file changes: the COPY says which, the RUN after says why
    fs::write(
        e.root().join("src/main.rs"),
        "fn main() { println!(\"v2\"); }",
    )
    .unwrap();
    e.build(df, &opts()).unwrap();
    assert_eq!(
        e.fake.st().events,
        vec![
            "stage 0 from busybox".to_string(),
            "miss 1: files changed: src/main.rs".into(),
            "miss 2: an earlier step changed (Dockerfile:3 COPY src/ /app/src/: files changed: src/main.rs)".into(),
            "miss 3: an earlier step changed (Dockerfile:3 COPY src/ /app/src/: files changed: src/main.rs)".into(),
            "miss 4: an earlier step changed (Dockerfile:3 COPY src/ /app/src/: files changed: src/main.rs)".into(),
        ]
    );

    // a build arg changes: like docker, every RUN after the ARG sees it (as env)
    let mut o = opts();
    o.build_args.insert("V".into(), "2".into());
    e.build(df, &o).unwrap();
    assert_eq!(
        e.fake.st().events,
        vec![
            "stage 0 from busybox".to_string(),
            "cached 1".into(),
            "miss 2: build arg V changed: \"1\" → \"2\"".into(),
            "miss 3: an earlier step changed (Dockerfile:4 RUN make: build arg V changed: \"1\" → \"2\")".into(),
            "miss 4: build arg V changed: \"1\" → \"2\"".into(),
        ]
    );

    // an instruction changes
    let df2 = df.replace("RUN make", "RUN make -j2");
    e.build(&df2, &o).unwrap();
    assert_eq!(
        e.fake.st().events[2],
        "miss 2: instruction changed: was \"RUN make\", now \"RUN make -j2\""
    );

    // --no-cache
    o.no_cache = true;
    e.build(&df2, &o).unwrap();
    assert!(e
        .fake
        .st()
        .events
        .iter()
        .filter(|s| s.starts_with("miss"))
        .all(|s| s.ends_with("--no-cache")));
    assert_eq!(
        e.fake
            .st()
            .events
            .iter()
            .filter(|s| s.starts_with("miss"))
            .count(),
        4
    );

    // a pruned result is rebuilt, and says so
    o.no_cache = false;
    e.fake.st().states.retain(|s| s.starts_with("img-"));
    e.build(&df2, &o).unwrap();
    assert_eq!(e.fake.st().events[1], "miss 1: cached result was removed");
}

#[test]
fn base_image_change_is_explained() {
    let mut e = Env::new();
    e.build("FROM busybox\nRUN x\n", &opts()).unwrap();
    e.build("FROM alpine\nRUN x\n", &opts()).unwrap();
    assert_eq!(
        e.fake.st().events[1],
        "miss 0: base image changed: FROM busybox@sha256:busybox-v1 → FROM alpine@sha256:alpine-v1"
    );
}

#[test]
fn onbuild_triggers_of_the_base_run_first() {
    let mut e = Env::new();
    let r = e
        .build("FROM onbuild-base\nRUN echo mine\n", &opts())
        .unwrap();
    let argvs: Vec<String> = e.fake.st().runs.iter().map(|r| r.argv.join(" ")).collect();
    assert_eq!(
        argvs,
        vec!["/bin/sh -c echo from-trigger", "/bin/sh -c echo mine"]
    );
    assert!(env_of(&r).contains(&"TRIGGERED=yes".to_string()));
    assert!(r.extra.on_build.is_empty(), "triggers are not inherited");
}

#[test]
fn heredoc_runs_and_copies() {
    let mut e = Env::new();
    let df = "FROM busybox\nARG NAME=world\nRUN <<EOF\necho hi\nEOF\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nRUN cat <<A > /a\nbody\nA\nCOPY <<greet.txt <<'raw.txt' /etc/\nhello $NAME\ngreet.txt\nhello $NAME\nraw.txt\n";
    e.build(df, &opts()).unwrap();
    assert_eq!(
        e.fake.st().runs[0].argv,
        vec!["/bin/sh".to_string(), "-c".into(), "echo hi\n".into()]
    );
    assert_eq!(e.fake.st().runs[1].argv, vec!["/dev/pipes/EOF".to_string()]);
    assert_eq!(
        e.fake.st().runs[1].files[0].content,
        b"#!/usr/bin/env python3\nprint(1)\n"
    );
    assert_eq!(e.fake.st().runs[2].argv[2], "cat <<A > /a\nbody\nA");
    let copies = e.fake.st().copies.clone();
    match &copies[0].from {
        CopyFrom::Inline { files } => {
            assert_eq!(files[0].path, "/etc/greet.txt");
            assert_eq!(files[0].content, b"hello world\n");
            assert_eq!(files[1].path, "/etc/raw.txt");
            assert_eq!(files[1].content, b"hello $NAME\n");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn copy_requests_carry_items_and_flags() {
    let mut e = Env::new();
    let df = "FROM busybox\nWORKDIR /w\nARG OWNER=1000\nCOPY --chown=${OWNER}:0 --chmod=0640 src/*.rs ./code/\nADD README.md rel\n";
    e.build(df, &opts()).unwrap();
    let copies = e.fake.st().copies.clone();
    let c = &copies[0];
    assert_eq!(
        (c.chown.as_deref(), c.chmod.as_deref(), c.add),
        (Some("1000:0"), Some("0640"), false)
    );
    match &c.from {
        CopyFrom::Context { items, entries, .. } => {
            let dests: Vec<&str> = items.iter().map(|i| i.dest.as_str()).collect();
            assert_eq!(dests, vec!["/w/code/lib.rs", "/w/code/main.rs"]);
            assert_eq!(entries.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(copies[1].add);
}

/// Build-time errors name the instruction's position and what was expected.
#[test]
fn build_error_table() {
    let cases: &[(&str, &str)] = &[
        ("FROM busybox\nCOPY ../x /x\n", "Dockerfile:2:6: COPY failed: ../x: forbidden path outside the build context (sources are relative to the context root)"),
        ("FROM busybox\nCOPY nope.txt /x\n", "Dockerfile:2:6: COPY failed: nope.txt: not found in the build context"),
        ("FROM busybox\nCOPY src/*.go /x/\n", "Dockerfile:2:6: COPY failed: src/*.go: no files in the build context match this pattern"),
        ("FROM busybox\nCOPY src/main.rs README.md /x\n", "Dockerfile:2:28: when using COPY with more than one source file, the destination must be a directory and end with a /: \"/x\""),
        ("FROM busybox\nADD https://example.com/f.tgz /x\n", "Dockerfile:2:5: ADD https://example.com/f.tgz: remote sources are not supported: this build runs offline; download the file into the build context and COPY it"),
        ("FROM busybox\nENV A=${B\n", "Dockerfile:2:10: missing '}' in variable substitution"),
        ("FROM busybox\nENV A=\"${B:?is required}\"\n", "Dockerfile:2:8: B: is required"),
        ("FROM busybox\nEXPOSE 99999\n", "Dockerfile:2:8: invalid port \"99999\" in EXPOSE: expected a number 1-65535 or a range like 8000-8010"),
        ("FROM busybox\nEXPOSE 80/http\n", "Dockerfile:2:8: invalid proto \"http\" in EXPOSE 80/http: expected tcp, udp or sctp"),
        ("FROM busybox\nSTOPSIGNAL SIGNOPE\n", "Dockerfile:2:12: invalid signal \"SIGNOPE\" in STOPSIGNAL: expected a name like SIGTERM or a number 1-64"),
        ("FROM busybox\nCOPY --chmod=999 README.md /x\n", "Dockerfile:2:14: invalid --chmod=\"999\": expected an octal mode like 0755"),
        ("FROM busybox\nCOPY --from=later /a /b\nFROM busybox AS later\n", "Dockerfile:2:13: stage \"later\" is used before it is defined (line 3): a stage can only use earlier stages"),
        ("FROM busybox\nCOPY --from=0 /a /b\n", "Dockerfile:2:13: --from=0 refers to the current or a later stage: expected an index below 0"),
        ("FROM nosuchimage\n", "Dockerfile:1:6: FROM nosuchimage: image nosuchimage not found: import or pull it first"),
        ("FROM busybox\nRUN make || exit 3\n", "Dockerfile:2:1: RUN make || exit 3: command failed (exit code 3)\nmake: *** [all] Error 3"),
        ("FROM busybox\nARG U\nUSER $U\n", "Dockerfile:3:6: USER expands to an empty string: expected USER <user>[:<group>]"),
    ];
    for (df, want) in cases {
        let mut e = Env::new();
        match e.build(df, &opts()) {
            Ok(_) => panic!("expected error for {df:?}"),
            Err(err) => {
                let s = err.to_string();
                assert!(s.starts_with(want), "for {df:?}\n got: {s}\nwant: {want}");
            }
        }
    }
}

#[test]
fn failed_build_keeps_earlier_cache_but_not_last_build_records() {
    let mut e = Env::new();
    let ok = e.build("FROM busybox\nRUN a\n", &opts());
    assert!(ok.is_ok());
    let err = e
        .build("FROM busybox\nRUN a\nRUN exit 3\n", &opts())
        .unwrap_err();
    assert!(matches!(err, BuildError::Step { .. }));
    // the step before the failure is cached for next time
    let _ = e.build("FROM busybox\nRUN a\nRUN b\n", &opts()).unwrap();
    assert_eq!(e.fake.st().events[1], "cached 0");
}

#[test]
fn copy_exclude_and_unsupported_flags() {
    let mut e = Env::new();
    fs::write(e.root().join("src/skip.tmp"), "tmp").unwrap();
    e.build(
        "FROM busybox\nCOPY --exclude=*.tmp --exclude=lib.rs src/ /app/\n",
        &opts(),
    )
    .unwrap();
    let copies = e.fake.st().copies.clone();
    match &copies[0].from {
        CopyFrom::Context { entries, .. } => {
            let names: Vec<&str> = entries[0]
                .iter()
                .map(|e| e.rel_to_source.as_str())
                .collect();
            assert_eq!(names, vec!["", "main.rs"]);
        }
        other => panic!("{other:?}"),
    }
    // an excluded file changing does not bust the cache
    fs::write(e.root().join("src/skip.tmp"), "changed").unwrap();
    e.build(
        "FROM busybox\nCOPY --exclude=*.tmp --exclude=lib.rs src/ /app/\n",
        &opts(),
    )
    .unwrap();
    assert_eq!(e.fake.st().events[1], "cached 0");
    let err = e
        .build("FROM busybox\nCOPY --parents a/b /x/\n", &opts())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dockerfile:2:6: COPY --parents is not supported by gabang build yet"
    );
}

#[test]
fn copy_from_stage_change_is_explained() {
    let mut e = Env::new();
    let df = "FROM busybox AS b\nARG V=1\nRUN echo $V\nFROM busybox\nCOPY --from=b /out /out\n";
    e.build(df, &opts()).unwrap();
    let mut o = opts();
    o.build_args.insert("V".into(), "2".into());
    e.build(df, &o).unwrap();
    assert_eq!(
        e.fake.st().events,
        vec![
            "stage 0 from busybox".to_string(),
            "miss 1: build arg V changed: \"1\" → \"2\"".into(),
            "stage 1 from busybox".into(),
            "miss 0: the stage copied from changed".into(),
        ]
    );
}

#[test]
fn from_platform_and_parser_warnings() {
    struct PlatformSpy(Mutex<Vec<String>>, Fake);
    impl StepExecutor for PlatformSpy {
        fn resolve_image(&self, r: &str, p: &Platform) -> Result<BaseImage, ExecError> {
            self.0.lock().unwrap().push(p.to_string());
            self.1.resolve_image(r, p)
        }
        fn scratch(&self) -> Result<StateId, ExecError> {
            self.1.scratch()
        }
        fn run(&self, req: &RunRequest) -> Result<StepOutput, ExecError> {
            self.1.run(req)
        }
        fn copy(&self, req: &CopyRequest) -> Result<StepOutput, ExecError> {
            self.1.copy(req)
        }
        fn mkdir_workdir(
            &self,
            s: &StateId,
            p: &str,
            u: Option<&str>,
        ) -> Result<Option<StepOutput>, ExecError> {
            self.1.mkdir_workdir(s, p, u)
        }
        fn has_state(&self, s: &StateId) -> bool {
            self.1.has_state(s)
        }
    }
    let e = Env::new();
    let df = parse("Dockerfile", "ARG P=linux/arm64/v8\nFROM --platform=$P busybox\nRUN a \\\n\n  b\nFROM --platform=$BUILDPLATFORM busybox\n").unwrap();
    let mut ctx = BuildContext::open(e.root(), StatCache::in_memory()).unwrap();
    let spy = PlatformSpy(Mutex::new(Vec::new()), Fake::default());
    let mut o = opts();
    o.target = Some("0".into());
    let r = build(&df, &o, &mut ctx, &mut CacheIndex::in_memory(), &spy).unwrap();
    assert_eq!(*spy.0.lock().unwrap(), vec!["linux/arm64/v8".to_string()]);
    assert_eq!(
        r.warnings,
        vec![
            "Dockerfile:4:1: empty continuation line (deprecated): remove it or add a comment"
                .to_string()
        ]
    );
    let bad = parse("Dockerfile", "FROM --platform=linux busybox\n").unwrap();
    let err = build(&bad, &opts(), &mut ctx, &mut CacheIndex::in_memory(), &spy).unwrap_err();
    assert_eq!(err.to_string(), "Dockerfile:1:17: invalid --platform=\"linux\": expected os/arch[/variant], e.g. linux/amd64");
}

#[test]
fn inserted_line_is_blamed_not_every_later_line() {
    let mut e = Env::new();
    e.build("FROM busybox\nRUN one\nRUN two\nRUN three\n", &opts())
        .unwrap();
    e.build(
        "FROM busybox\nRUN one\nRUN inserted\nRUN two\nRUN three\n",
        &opts(),
    )
    .unwrap();
    assert_eq!(
        e.fake.st().events,
        vec![
            "stage 0 from busybox".to_string(),
            "cached 0".into(),
            "miss 1: instruction changed: was \"RUN two\", now \"RUN inserted\"".into(),
            "miss 2: an earlier step changed (Dockerfile:3 RUN inserted: instruction changed: was \"RUN two\", now \"RUN inserted\")".into(),
            "miss 3: an earlier step changed (Dockerfile:3 RUN inserted: instruction changed: was \"RUN two\", now \"RUN inserted\")".into(),
        ]
    );
}

/// Stages of one level run at the same time: each RUN waits until the other
/// stage's RUN has started (sequential execution would fail, not hang).
#[test]
fn independent_stages_run_concurrently() {
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;
    struct Rendezvous {
        started: Mutex<usize>,
        cv: Condvar,
        fake: Fake,
    }
    impl StepExecutor for Rendezvous {
        fn resolve_image(&self, r: &str, p: &Platform) -> Result<BaseImage, ExecError> {
            self.fake.resolve_image(r, p)
        }
        fn scratch(&self) -> Result<StateId, ExecError> {
            self.fake.scratch()
        }
        fn run(&self, req: &RunRequest) -> Result<StepOutput, ExecError> {
            if req.argv.iter().any(|a| a.starts_with("meet")) {
                let mut n = self.started.lock().unwrap();
                *n += 1;
                self.cv.notify_all();
                let (n, timeout) = self
                    .cv
                    .wait_timeout_while(n, Duration::from_secs(20), |n| *n < 2)
                    .unwrap();
                if timeout.timed_out() {
                    return Err(ExecError {
                        message: format!("the other stage never started ({} of 2)", *n),
                        ..Default::default()
                    });
                }
            }
            self.fake.run(req)
        }
        fn copy(&self, req: &CopyRequest) -> Result<StepOutput, ExecError> {
            self.fake.copy(req)
        }
        fn mkdir_workdir(
            &self,
            s: &StateId,
            p: &str,
            u: Option<&str>,
        ) -> Result<Option<StepOutput>, ExecError> {
            self.fake.mkdir_workdir(s, p, u)
        }
        fn has_state(&self, s: &StateId) -> bool {
            self.fake.has_state(s)
        }
    }
    let e = Env::new();
    let df = parse("Dockerfile", "FROM busybox AS a\nRUN meet a\nFROM busybox AS b\nRUN meet b\nFROM scratch\nCOPY --from=a /x /x\nCOPY --from=b /y /y\n").unwrap();
    let mut ctx = BuildContext::open(e.root(), StatCache::in_memory()).unwrap();
    let ex = Rendezvous {
        started: Mutex::new(0),
        cv: Condvar::new(),
        fake: Fake::default(),
    };
    let r = build(&df, &opts(), &mut ctx, &mut CacheIndex::in_memory(), &ex).unwrap();
    assert_eq!(r.levels, vec![vec![0, 1], vec![2]]);
    assert_eq!(*ex.started.lock().unwrap(), 2);
    // reports come back in Dockerfile order whatever the threads did
    let order: Vec<(usize, usize)> = r.steps.iter().map(|s| (s.stage, s.step)).collect();
    assert_eq!(order, vec![(0, 0), (1, 0), (2, 0), (2, 1)]);
}
