//! Parser behaviour: every instruction form, directives, continuations,
//! heredocs, and exact error messages with positions.

use gabang_build::parser::*;
use gabang_build::{parse, Pos};
use std::time::Duration;

fn ok(text: &str) -> Dockerfile {
    match parse("Dockerfile", text) {
        Ok(d) => d,
        Err(e) => panic!("parse failed: {e}\n{text}"),
    }
}

fn kinds(text: &str) -> Vec<InstructionKind> {
    ok(text)
        .stages
        .into_iter()
        .flat_map(|s| s.instructions)
        .map(|i| i.kind)
        .collect()
}

fn one(text: &str) -> InstructionKind {
    let mut k = kinds(&format!("FROM scratch\n{text}"));
    assert_eq!(k.len(), 1, "{text}");
    k.remove(0)
}

fn texts(ws: &[Word]) -> Vec<&str> {
    ws.iter().map(|w| w.text.as_str()).collect()
}

#[test]
fn from_forms() {
    let d = ok("ARG V=1\nFROM --platform=linux/amd64 busybox:${V} AS Build\nFROM scratch\nfrom build as final\n");
    assert_eq!(d.global_args.len(), 1);
    assert_eq!(d.global_args[0].name, "V");
    assert_eq!(d.stages.len(), 3);
    assert_eq!(d.stages[0].name.as_deref(), Some("build"));
    assert_eq!(d.stages[0].from.image.text, "busybox:${V}");
    assert_eq!(
        d.stages[0].from.platform.as_ref().map(|w| w.text.as_str()),
        Some("linux/amd64")
    );
    assert_eq!(d.stages[1].from.image.text, "scratch");
    assert_eq!(d.stages[1].name, None);
    assert_eq!(d.stages[2].name.as_deref(), Some("final"));
    assert_eq!(d.stages[2].pos, Pos::new(4, 1));
    assert_eq!(d.stage_by_ref("BUILD"), Some(0));
    assert_eq!(d.stage_by_ref("1"), Some(1));
    assert_eq!(d.stage_by_ref("7"), None);
}

#[test]
fn run_cmd_entrypoint_forms() {
    assert_eq!(
        one("RUN echo hi && ls"),
        InstructionKind::Run(RunArgs {
            flags: vec![],
            command: Command::Shell("echo hi && ls".into()),
            heredocs: vec![]
        })
    );
    match one("RUN [\"/bin/echo\", \"a b\"]") {
        InstructionKind::Run(r) => assert_eq!(
            r.command,
            Command::Exec(vec!["/bin/echo".into(), "a b".into()])
        ),
        k => panic!("{k:?}"),
    }
    // invalid JSON falls back to shell form, like docker
    match one("CMD [\"a\", b]") {
        InstructionKind::Cmd(c) => assert_eq!(c, Command::Shell("[\"a\", b]".into())),
        k => panic!("{k:?}"),
    }
    assert_eq!(
        one("ENTRYPOINT [\"sh\"]"),
        InstructionKind::Entrypoint(Command::Exec(vec!["sh".into()]))
    );
    assert_eq!(one("CMD []"), InstructionKind::Cmd(Command::Exec(vec![])));
    match one("RUN --mount=type=cache,target=/c --network=none make") {
        InstructionKind::Run(r) => {
            assert_eq!(r.flags.len(), 2);
            assert_eq!(r.flags[0].name, "mount");
            assert_eq!(
                r.flags[0].value.as_ref().map(|v| v.text.as_str()),
                Some("type=cache,target=/c")
            );
            assert_eq!(r.command, Command::Shell("make".into()));
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn continuations_comments_and_blank_lines() {
    let d =
        ok("FROM scratch\nRUN echo a \\\n# a comment inside\n  b \\\n\n    c\nrun   echo   d  \n");
    let i = &d.stages[0].instructions;
    assert_eq!(i.len(), 2);
    assert_eq!(
        i[0].kind,
        InstructionKind::Run(RunArgs {
            flags: vec![],
            command: Command::Shell("echo a   b     c".into()),
            heredocs: vec![]
        })
    );
    assert_eq!(i[0].pos, Pos::new(2, 1));
    assert_eq!(i[1].keyword, "RUN");
    assert_eq!(i[1].pos, Pos::new(7, 1));
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(
        d.warnings[0].to_string(),
        "Dockerfile:5:1: empty continuation line (deprecated): remove it or add a comment"
    );
}

#[test]
fn escape_directive_backtick() {
    let d = ok("# escape=`\n# syntax=docker/dockerfile:1\nFROM scratch\nRUN dir c:\\ `\n  && echo x\nCOPY a\\b c:\\dest\\\n");
    assert_eq!(d.directives.escape, '`');
    assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    let i = &d.stages[0].instructions;
    assert_eq!(
        i[0].kind,
        InstructionKind::Run(RunArgs {
            flags: vec![],
            command: Command::Shell("dir c:\\   && echo x".into()),
            heredocs: vec![]
        })
    );
    match &i[1].kind {
        InstructionKind::Copy(c) => assert_eq!(c.dest.text, "c:\\dest\\"),
        k => panic!("{k:?}"),
    }
}

#[test]
fn directives_stop_at_first_non_directive() {
    let d = ok("# comment\n# escape=`\nFROM scratch\n");
    assert_eq!(d.directives.escape, '\\');
    let d = ok("\n# escape=`\nFROM scratch\n");
    assert_eq!(d.directives.escape, '\\');
    let d = ok("#ESCAPE = `\nFROM scratch\n");
    assert_eq!(d.directives.escape, '`');
}

#[test]
fn heredocs() {
    let d = ok("FROM scratch\nRUN <<EOF\necho $HOME\nEOF\nRUN <<-'END' cat > /x\n\tline1\n\t\tline2\n\tEND\nCOPY <<a.txt <<\"b.txt\" /dir/\nhello ${X}\na.txt\nworld\nb.txt\nRUN echo done\n");
    let i = &d.stages[0].instructions;
    assert_eq!(i.len(), 4);
    match &i[0].kind {
        InstructionKind::Run(r) => {
            assert_eq!(r.heredocs.len(), 1);
            assert_eq!(r.heredocs[0].name, "EOF");
            assert_eq!(r.heredocs[0].content, "echo $HOME\n");
            assert!(r.heredocs[0].expand);
        }
        k => panic!("{k:?}"),
    }
    match &i[1].kind {
        InstructionKind::Run(r) => {
            let h = &r.heredocs[0];
            assert_eq!(
                (h.name.as_str(), h.content.as_str(), h.expand, h.chomp),
                ("END", "line1\nline2\n", false, true)
            );
            assert_eq!(r.command, Command::Shell("<<-'END' cat > /x".into()));
        }
        k => panic!("{k:?}"),
    }
    match &i[2].kind {
        InstructionKind::Copy(c) => {
            assert_eq!(c.sources.len(), 2);
            match (&c.sources[0], &c.sources[1]) {
                (CopySource::Heredoc(a), CopySource::Heredoc(b)) => {
                    assert_eq!(
                        (a.name.as_str(), a.content.as_str(), a.expand),
                        ("a.txt", "hello ${X}\n", true)
                    );
                    assert_eq!(
                        (b.name.as_str(), b.content.as_str(), b.expand),
                        ("b.txt", "world\n", false)
                    );
                }
                s => panic!("{s:?}"),
            }
            assert_eq!(c.dest.text, "/dir/");
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(i[3].pos, Pos::new(14, 1));
    // heredoc text is part of the instruction text (cache key input)
    assert!(i[0].text.contains("echo $HOME"));
}

#[test]
fn env_label_arg_forms() {
    match one("ENV A=1 B=\"two words\" C=three\\ words") {
        InstructionKind::Env(kv) => {
            let got: Vec<(&str, &str)> = kv
                .iter()
                .map(|k| (k.key.text.as_str(), k.value.text.as_str()))
                .collect();
            assert_eq!(
                got,
                vec![("A", "1"), ("B", "\"two words\""), ("C", "three\\ words")]
            );
            assert_eq!(kv[1].key.pos, Pos::new(2, 9));
            assert_eq!(kv[1].value.pos, Pos::new(2, 11));
        }
        k => panic!("{k:?}"),
    }
    match one("ENV LEGACY value with  spaces") {
        InstructionKind::Env(kv) => {
            assert_eq!(kv.len(), 1);
            assert_eq!(kv[0].key.text, "LEGACY");
            assert_eq!(kv[0].value.text, "value with  spaces");
        }
        k => panic!("{k:?}"),
    }
    match one("LABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0") {
        InstructionKind::Label(kv) => {
            assert_eq!(kv[0].key.text, "\"com.example.vendor\"");
            assert_eq!(kv[0].value.text, "\"ACME Inc\"");
            assert_eq!(kv[1].key.text, "version");
        }
        k => panic!("{k:?}"),
    }
    match one("ARG A B=2 C=\"x y\"") {
        InstructionKind::Arg(a) => {
            assert_eq!(a.len(), 3);
            assert_eq!(a[0].default, None);
            assert_eq!(a[1].default.as_ref().map(|w| w.text.as_str()), Some("2"));
            assert_eq!(
                a[2].default.as_ref().map(|w| w.text.as_str()),
                Some("\"x y\"")
            );
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn small_instructions() {
    match one("EXPOSE 80 443/tcp 53/udp 8000-8010") {
        InstructionKind::Expose(w) => {
            assert_eq!(texts(&w), vec!["80", "443/tcp", "53/udp", "8000-8010"])
        }
        k => panic!("{k:?}"),
    }
    match one("VOLUME [\"/data\", \"/logs\"]") {
        InstructionKind::Volume(w) => assert_eq!(texts(&w), vec!["/data", "/logs"]),
        k => panic!("{k:?}"),
    }
    match one("VOLUME /a /b") {
        InstructionKind::Volume(w) => assert_eq!(texts(&w), vec!["/a", "/b"]),
        k => panic!("{k:?}"),
    }
    match one("WORKDIR /app dir") {
        InstructionKind::Workdir(w) => assert_eq!(w.text, "/app dir"),
        k => panic!("{k:?}"),
    }
    match one("USER app:staff") {
        InstructionKind::User(w) => assert_eq!(w.text, "app:staff"),
        k => panic!("{k:?}"),
    }
    assert_eq!(
        one("SHELL [\"/bin/bash\", \"-c\"]"),
        InstructionKind::Shell(vec!["/bin/bash".into(), "-c".into()])
    );
    match one("STOPSIGNAL SIGKILL") {
        InstructionKind::Stopsignal(w) => assert_eq!(w.text, "SIGKILL"),
        k => panic!("{k:?}"),
    }
    match one("MAINTAINER Jane <j@example.com>") {
        InstructionKind::Maintainer(w) => assert_eq!(w.text, "Jane <j@example.com>"),
        k => panic!("{k:?}"),
    }
    match one("ONBUILD RUN echo built") {
        InstructionKind::Onbuild(i) => {
            assert_eq!(i.keyword, "RUN");
            assert_eq!(i.text, "RUN echo built");
            assert_eq!(i.pos, Pos::new(2, 9));
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn copy_add_forms() {
    match one("COPY --from=build --chown=app:app --chmod=0755 --link a b* /dest/") {
        InstructionKind::Copy(c) => {
            assert_eq!(c.from.as_ref().map(|w| w.text.as_str()), Some("build"));
            assert_eq!(c.chown.as_ref().map(|w| w.text.as_str()), Some("app:app"));
            assert_eq!(c.chmod.as_ref().map(|w| w.text.as_str()), Some("0755"));
            assert!(c.link);
            assert_eq!(c.sources.len(), 2);
            assert_eq!(c.dest.text, "/dest/");
        }
        k => panic!("{k:?}"),
    }
    match one("ADD [\"a b.txt\", \"/x y/\"]") {
        InstructionKind::Add(c) => {
            assert_eq!(
                c.sources,
                vec![CopySource::Path(Word {
                    text: "a b.txt".into(),
                    pos: Pos::new(2, 5)
                })]
            );
            assert_eq!(c.dest.text, "/x y/");
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn healthcheck_forms() {
    match one("HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --retries=3 CMD curl -f http://localhost/ || exit 1") {
        InstructionKind::Healthcheck(h) => {
            assert_eq!(h.interval, Some(Duration::from_secs(300)));
            assert_eq!(h.timeout, Some(Duration::from_secs(3)));
            assert_eq!(h.start_period, Some(Duration::from_secs(90)));
            assert_eq!(h.retries, Some(3));
            assert_eq!(h.test, HealthTest::Cmd(Command::Shell("curl -f http://localhost/ || exit 1".into())));
        }
        k => panic!("{k:?}"),
    }
    match one("HEALTHCHECK NONE") {
        InstructionKind::Healthcheck(h) => assert_eq!(h.test, HealthTest::None),
        k => panic!("{k:?}"),
    }
    match one("healthcheck cmd [\"/bin/check\"]") {
        InstructionKind::Healthcheck(h) => assert_eq!(
            h.test,
            HealthTest::Cmd(Command::Exec(vec!["/bin/check".into()]))
        ),
        k => panic!("{k:?}"),
    }
}

#[test]
fn case_insensitive_and_crlf_and_bom() {
    let d = ok("\u{feff}from scratch\r\nRun echo\r\nCoPy a b\r\n");
    let i = &d.stages[0].instructions;
    assert_eq!(i[0].keyword, "RUN");
    assert_eq!(
        i[0].kind,
        InstructionKind::Run(RunArgs {
            flags: vec![],
            command: Command::Shell("echo".into()),
            heredocs: vec![]
        })
    );
    assert_eq!(i[1].keyword, "COPY");
}

/// Exact errors: file:line:column and what was expected.
#[test]
fn error_table() {
    let cases: &[(&str, &str)] = &[
        ("FROM scratch\nRUN echo\nRUNN echo", "Dockerfile:3:1: unknown instruction \"RUNN\" (did you mean RUN?)"),
        ("FROM scratch\n  COPPY a b", "Dockerfile:2:3: unknown instruction \"COPPY\" (did you mean COPY?)"),
        ("FROM scratch\nXYZZYQ", "Dockerfile:2:1: unknown instruction \"XYZZYQ\""),
        ("RUN echo", "Dockerfile:1:1: RUN before the first FROM: only ARG may come before FROM"),
        ("# just a comment\nARG X=1\n", "Dockerfile:3:1: expected a FROM instruction: a Dockerfile needs at least one build stage"),
        ("FROM", "Dockerfile:1:1: FROM requires at least one argument"),
        ("FROM a b", "Dockerfile:1:8: expected FROM <image> [AS <name>], found an extra word \"b\""),
        ("FROM a IS b", "Dockerfile:1:8: expected AS after the image in FROM, found \"IS\""),
        ("FROM a AS 1abc", "Dockerfile:1:11: invalid stage name \"1abc\": expected a letter followed by letters, digits, '-', '_' or '.'"),
        ("FROM a AS x\nFROM b AS X", "Dockerfile:2:1: duplicate stage name \"x\""),
        ("FROM --plat=x a", "Dockerfile:1:6: unknown flag --plat=x for FROM: expected one of --platform"),
        ("FROM a\nCOPY --form=x a b", "Dockerfile:2:6: unknown flag --form=x for COPY: expected one of --from, --chown, --chmod, --link, --parents, --exclude"),
        ("FROM a\nCOPY --from a b", "Dockerfile:2:6: flag --from for COPY needs a value: --from=<value>"),
        ("FROM a\nCOPY onlyone", "Dockerfile:2:1: COPY requires at least two arguments, but only one was provided. Destination could not be determined"),
        ("FROM a\nENV A=1 B", "Dockerfile:2:9: syntax error - can't find = in \"B\": expected ENV <name>=<value>"),
        ("FROM a\nLABEL k", "Dockerfile:2:7: LABEL must have two arguments: expected LABEL <key>=<value> or LABEL <key> <value>"),
        ("FROM a\nENV =1", "Dockerfile:2:5: ENV names can not be blank: expected <name>=<value>"),
        ("FROM a\nARG =x", "Dockerfile:2:5: ARG names can not be blank: expected ARG <name>[=<default>]"),
        ("FROM a\nRUN", "Dockerfile:2:1: RUN requires at least one argument"),
        ("FROM a\nRUN    \\\n", "Dockerfile:2:1: RUN requires at least one argument"),
        ("FROM a\nSHELL /bin/sh -c", "Dockerfile:2:7: SHELL requires the arguments to be in JSON form: expected SHELL [\"executable\", \"param\"]"),
        ("FROM a\nSTOPSIGNAL A B", "Dockerfile:2:1: STOPSIGNAL requires exactly one argument"),
        ("FROM a\nVOLUME [\"\"]", "Dockerfile:2:8: VOLUME specified can not be an empty string"),
        ("FROM a\nHEALTHCHECK CMD", "Dockerfile:2:13: missing command after HEALTHCHECK CMD"),
        ("FROM a\nHEALTHCHECK RUN x", "Dockerfile:2:13: unknown type \"RUN\" in HEALTHCHECK: expected CMD or NONE"),
        ("FROM a\nHEALTHCHECK NONE x", "Dockerfile:2:13: HEALTHCHECK NONE takes no arguments or flags"),
        ("FROM a\nHEALTHCHECK --interval=5 CMD x", "Dockerfile:2:24: invalid --interval duration \"5\": expected a duration like 30s, 1m30s or 500ms"),
        ("FROM a\nHEALTHCHECK --timeout=1us CMD x", "Dockerfile:2:23: --timeout \"1us\" cannot be less than 1ms"),
        ("FROM a\nHEALTHCHECK --retries=-1 CMD x", "Dockerfile:2:23: --retries cannot be negative (-1)"),
        ("FROM a\nHEALTHCHECK --retries=x CMD x", "Dockerfile:2:23: invalid --retries value \"x\": expected a whole number"),
        ("FROM a\nONBUILD ONBUILD RUN x", "Dockerfile:2:9: chaining ONBUILD via ONBUILD ONBUILD isn't allowed"),
        ("FROM a\nONBUILD FROM x", "Dockerfile:2:9: FROM isn't allowed as an ONBUILD trigger"),
        ("FROM a\nONBUILD RUNX x", "Dockerfile:2:9: unknown instruction \"RUNX\" (did you mean RUN?)"),
        ("FROM a\nRUN <<EOF\necho\n", "Dockerfile:2:5: unterminated heredoc <<EOF: expected a line \"EOF\" before the end of the file"),
        ("# escape=x\nFROM a", "Dockerfile:1:10: invalid escape token 'x': expected '\\' or '`'"),
        ("# escape=`\n# escape=\\\nFROM a", "Dockerfile:2:1: only one escape parser directive can be used"),
        ("FROM a\nRUN echo \\\n  ok\nWRKDIR /x", "Dockerfile:4:1: unknown instruction \"WRKDIR\" (did you mean WORKDIR?)"),
    ];
    for (text, want) in cases {
        match parse("Dockerfile", text) {
            Ok(d) => panic!("expected error {want:?} for {text:?}, got {d:?}"),
            Err(e) => assert_eq!(e.to_string(), *want, "for {text:?}"),
        }
    }
}

#[test]
fn error_positions_across_continuations() {
    let e = parse("Dockerfile", "FROM a\nCOPY \\\n   --bad=1 a b").unwrap_err();
    assert_eq!(e.pos, Pos::new(3, 4));
    assert_eq!(e.message, "unknown flag --bad=1 for COPY: expected one of --from, --chown, --chmod, --link, --parents, --exclude");
}
