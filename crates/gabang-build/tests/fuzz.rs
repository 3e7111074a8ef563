//! Fuzz-style robustness: realistic Dockerfiles mutated with random bytes,
//! unicode, truncations and line shuffles (fixed seed, thousands of cases)
//! go through the parser, the expander, the stage planner and a full build
//! with a recording executor. None may panic; every failure is an error value.

use gabang_build::cache::CacheIndex;
use gabang_build::context::{BuildContext, StatCache};
use gabang_build::expand::{expand_heredoc, expand_word};
use gabang_build::ignore::{Dockerignore, Glob};
use gabang_build::parser::{CopySource, InstructionKind, Word};
use gabang_build::plan::*;
use gabang_build::{parse, Dockerfile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};

const SEEDS: &[&str] = &[
    "# syntax=docker/dockerfile:1\nARG BASE=busybox\nARG VERSION=1.0\nFROM ${BASE} AS build\nARG VERSION\nENV APP_VERSION=${VERSION:-dev} PATH=/app/bin:$PATH\nWORKDIR /src\nCOPY --chown=1000:1000 src/ ./src/\nRUN set -eux; \\\n    make all \\\n    # comment inside\n    && make install\nFROM scratch\nCOPY --from=build /app /app\nENTRYPOINT [\"/app/bin/server\"]\nCMD [\"--port\", \"8080\"]\nEXPOSE 8080/tcp 9000-9002\n",
    "# escape=`\nFROM busybox\nSHELL [\"/bin/sh\", \"-c\"]\nRUN echo a `\n  b\nCOPY a.txt c:\\dest\\\nLABEL \"com.example\"=\"x y\" v=1\nVOLUME [\"/data\"]\nUSER nobody:nogroup\nSTOPSIGNAL SIGTERM\n",
    "FROM busybox\nRUN <<EOF\n#!/bin/sh\necho hello ${NAME}\nEOF\nRUN <<-'END' cat > /etc/x\n\tbody\n\tEND\nCOPY <<a.txt <<b.txt /etc/\nalpha $HOME\na.txt\nbeta\nb.txt\n",
    "FROM busybox AS base\nHEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 CMD wget -q -O- http://localhost/ || exit 1\nONBUILD RUN echo trigger\nMAINTAINER someone <a@b.c>\nFROM base\nHEALTHCHECK NONE\nENV A B C\nENV D=\"quoted value\" E='single' F=esc\\ aped\nARG X Y=2 Z=\"${Y}-z\"\nRUN [\"/bin/echo\", \"${X}\"]\nADD src/*.rs /code/\n",
    "FROM busybox\nWORKDIR /a\nWORKDIR b/../c\nWORKDIR ${HOME:-/root}/x\nCOPY . .\nCOPY [\"src/main.rs\", \"/main.rs\"]\nRUN --mount=type=cache,target=/root/.cache --network=none echo ok\nEXPOSE 80 443\nFROM 0\nCOPY --from=0 /a /b\n",
];

const JUNK: &[&str] = &[
    "\\",
    "`",
    "$",
    "${",
    "}",
    "{",
    ":-",
    ":+",
    ":?",
    "\"",
    "'",
    "[",
    "]",
    "<<",
    "<<-",
    "EOF",
    "\n",
    "\r\n",
    "#",
    "=",
    " ",
    "\t",
    "--",
    "--from=",
    "AS",
    "FROM ",
    "RUN ",
    "COPY ",
    "..",
    "/",
    "*",
    "?",
    "é",
    "日本",
    "🦀",
    "\u{feff}",
    "\u{0}",
    "\u{202e}",
    "ONBUILD ",
    "HEALTHCHECK ",
    "# escape=`\n",
    "\\\n",
    "${A:-${B:-${C}}}",
    "[\"a\",",
    "0",
    "99999999999999999999",
];

fn mutate(rng: &mut StdRng, seed: &str) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    let rounds = rng.gen_range(1..=6);
    for _ in 0..rounds {
        match rng.gen_range(0..7) {
            0 => {
                // truncate
                let at = rng.gen_range(0..=chars.len());
                chars.truncate(at);
            }
            1 => {
                // insert junk tokens
                let at = rng.gen_range(0..=chars.len());
                let j = JUNK[rng.gen_range(0..JUNK.len())];
                for (i, c) in j.chars().enumerate() {
                    chars.insert(at + i, c);
                }
            }
            2 => {
                // random unicode scalar
                let at = rng.gen_range(0..=chars.len());
                let c = loop {
                    if let Some(c) = char::from_u32(rng.gen_range(0..0x11_0000)) {
                        break c;
                    }
                };
                chars.insert(at, c);
            }
            3 => {
                // random ASCII bytes
                let at = rng.gen_range(0..=chars.len());
                for _ in 0..rng.gen_range(1..8) {
                    chars.insert(at, rng.gen_range(0u8..128) as char);
                }
            }
            4 => {
                // delete a range
                if !chars.is_empty() {
                    let a = rng.gen_range(0..chars.len());
                    let b = (a + rng.gen_range(1..20)).min(chars.len());
                    chars.drain(a..b);
                }
            }
            5 => {
                // duplicate or swap lines
                let s: String = chars.iter().collect();
                let mut lines: Vec<&str> = s.split('\n').collect();
                if lines.len() > 1 {
                    let a = rng.gen_range(0..lines.len());
                    let b = rng.gen_range(0..lines.len());
                    if rng.gen_bool(0.5) {
                        lines.swap(a, b);
                    } else {
                        let l = lines[a];
                        lines.insert(b, l);
                    }
                }
                chars = lines.join("\n").chars().collect();
            }
            _ => {
                // flip case of a run
                let a = rng.gen_range(0..=chars.len());
                let b = (a + 5).min(chars.len());
                for c in &mut chars[a..b] {
                    *c = if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    };
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn words(df: &Dockerfile) -> Vec<Word> {
    let mut out = Vec::new();
    for a in &df.global_args {
        out.extend(a.default.clone());
    }
    for st in &df.stages {
        out.push(st.from.image.clone());
        for i in &st.instructions {
            match &i.kind {
                InstructionKind::Env(kv) | InstructionKind::Label(kv) => {
                    for k in kv {
                        out.push(k.key.clone());
                        out.push(k.value.clone());
                    }
                }
                InstructionKind::Expose(w) | InstructionKind::Volume(w) => {
                    out.extend(w.iter().cloned())
                }
                InstructionKind::Workdir(w)
                | InstructionKind::User(w)
                | InstructionKind::Stopsignal(w) => out.push(w.clone()),
                InstructionKind::Copy(c) | InstructionKind::Add(c) => {
                    out.push(c.dest.clone());
                    for s in &c.sources {
                        match s {
                            CopySource::Path(w) => out.push(w.clone()),
                            CopySource::Heredoc(h) => out.push(Word {
                                text: h.content.clone(),
                                pos: h.pos,
                            }),
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

struct Quiet;

impl StepExecutor for Quiet {
    fn resolve_image(&self, reference: &str, _p: &Platform) -> Result<BaseImage, ExecError> {
        if reference.len() > 40 || reference.contains(char::is_whitespace) {
            return Err(ExecError {
                message: "no such image".into(),
                ..Default::default()
            });
        }
        let mut extra = gabang_build::config::ExtraConfig::default();
        if reference.ends_with("box") {
            extra.on_build = vec!["RUN echo ${X:-trigger}".into(), "ENV T=1".into()];
        } else if reference.contains('Q') {
            extra.on_build = vec![
                "ENV".into(),
                "COPY <<EOF /x".into(),
                "ONBUILD ONBUILD".into(),
            ];
        }
        Ok(BaseImage {
            id: format!("sha256:{reference}"),
            config: Default::default(),
            extra,
            state: StateId("img".into()),
        })
    }
    fn scratch(&self) -> Result<StateId, ExecError> {
        Ok(StateId("scratch".into()))
    }
    fn run(&self, req: &RunRequest) -> Result<StepOutput, ExecError> {
        Ok(StepOutput {
            state: StateId(req.cache_key.clone()),
            layer: None,
        })
    }
    fn copy(&self, req: &CopyRequest) -> Result<StepOutput, ExecError> {
        Ok(StepOutput {
            state: StateId(req.cache_key.clone()),
            layer: None,
        })
    }
    fn mkdir_workdir(
        &self,
        _s: &StateId,
        _p: &str,
        _u: Option<&str>,
    ) -> Result<Option<StepOutput>, ExecError> {
        Ok(None)
    }
    fn has_state(&self, _s: &StateId) -> bool {
        true
    }
}

#[test]
fn mutated_dockerfiles_never_panic() {
    let ctx_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ctx_dir.path().join("src")).unwrap();
    std::fs::write(ctx_dir.path().join("src/main.rs"), "fn main() {}").unwrap();
    std::fs::write(ctx_dir.path().join("a.txt"), "a").unwrap();
    let mut rng = StdRng::seed_from_u64(0x6761_6261_6e67);
    let iterations = 6000;
    let (mut parsed, mut built, mut errors) = (0, 0, 0);
    for n in 0..iterations {
        let seed = SEEDS[n % SEEDS.len()];
        let text = mutate(&mut rng, seed);
        let env_value: String = mutate(&mut rng, "v${W}").chars().take(12).collect();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut stats = (0, 0, 0);
            match parse("Dockerfile", &text) {
                Ok(df) => {
                    stats.0 += 1;
                    for w in words(&df) {
                        let _ = expand_word(&w.text, df.directives.escape, &mut |n| {
                            (n != "UNSET").then(|| env_value.clone())
                        });
                        let _ = expand_heredoc(&w.text, df.directives.escape, &mut |_| None);
                    }
                    let mut opts = BuildOptions::new("fuzz");
                    opts.build_args.insert("VERSION".into(), env_value.clone());
                    let _ = plan_stages(&df, &opts);
                    let mut ctx =
                        BuildContext::open(ctx_dir.path(), StatCache::in_memory()).unwrap();
                    let mut cache = CacheIndex::in_memory();
                    match build(&df, &opts, &mut ctx, &mut cache, &Quiet) {
                        Ok(_) => stats.1 += 1,
                        Err(e) => {
                            assert!(!e.to_string().is_empty());
                            stats.2 += 1;
                        }
                    }
                }
                Err(e) => {
                    // every parse error has a position inside the file
                    assert!(e.pos.line >= 1 && e.pos.col >= 1, "{e}");
                    assert!(e.to_string().starts_with("Dockerfile:"), "{e}");
                    stats.2 += 1;
                }
            }
            stats
        }));
        match outcome {
            Ok((p, b, e)) => {
                parsed += p;
                built += b;
                errors += e;
            }
            Err(_) => panic!("panic on iteration {n} with input:\n{text:?}"),
        }
    }
    eprintln!(
        "fuzz: {iterations} inputs, {parsed} parsed, {built} built, {errors} errors, 0 panics"
    );
    // the corpus must exercise both paths, not only errors
    assert!(parsed > iterations / 4, "parsed {parsed}");
    assert!(built > iterations / 10, "built {built}");
    assert!(errors > iterations / 10, "errors {errors}");
}

#[test]
fn random_words_and_patterns_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    for n in 0..20_000 {
        let len = rng.gen_range(0..24);
        let s: String = (0..len)
            .map(|_| match rng.gen_range(0..4) {
                0 => JUNK[rng.gen_range(0..JUNK.len())]
                    .chars()
                    .next()
                    .unwrap_or('x'),
                1 => *b"${}:-+?\\'\"*[]!^/.a"
                    .get(rng.gen_range(0..18))
                    .unwrap_or(&b'a') as char,
                2 => char::from_u32(rng.gen_range(0..0x3000)).unwrap_or('z'),
                _ => rng.gen_range(b'a'..=b'z') as char,
            })
            .collect();
        let r = catch_unwind(|| {
            let _ = expand_word(&s, '\\', &mut |_| Some("v".into()));
            let _ = expand_word(&s, '`', &mut |_| None);
            if let Ok(g) = Glob::new(&s, n % 2 == 0) {
                let _ = g.matches("a/b/c.txt");
                let _ = g.matches(&s);
            }
            if let Ok(d) = Dockerignore::parse(&s) {
                let _ = d.is_excluded(&s);
                let _ = d.is_excluded("src/a.rs");
                let _ = d.must_walk_excluded_dir(&s);
            }
            let _ = parse("Dockerfile", &s);
            let _ = parse(
                "Dockerfile",
                &format!("FROM a\nRUN {s}\nENV {s}\nCOPY {s} /x\nHEALTHCHECK {s}\nONBUILD {s}"),
            );
        });
        assert!(r.is_ok(), "panic on {s:?}");
    }
}

#[test]
fn pathological_inputs_stay_fast_enough_to_finish() {
    // deep nesting, long lines and many stars: bounded work, no stack overflow
    let deep = format!("{}x{}", "${A:-".repeat(10_000), "}".repeat(10_000));
    assert!(expand_word(&deep, '\\', &mut |_| None).is_err());
    let stars = format!("{}b", "*".repeat(2000));
    let g = Glob::new(&stars, true).unwrap();
    assert!(!g.matches(&"a".repeat(2000)));
    let long = format!("FROM a\nRUN {}\n", "x \\\n".repeat(20_000));
    assert!(parse("Dockerfile", &long).is_ok());
    let many = format!("FROM a\n{}", "ENV A=1\n".repeat(20_000));
    assert_eq!(
        parse("Dockerfile", &many)
            .map(|d| d.stages[0].instructions.len())
            .ok(),
        Some(20_000)
    );
}
