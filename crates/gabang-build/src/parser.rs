//! The Dockerfile parser, following buildkit's `frontend/dockerfile/parser`:
//! parser directives, logical lines (continuations skip comment and blank lines),
//! here-documents, then one typed [`Instruction`] per logical line.
//!
//! Nothing here expands variables (see [`crate::expand`] and [`crate::plan`]);
//! words keep their position so later errors can point at them.

use crate::error::{DockerfileError, Pos};
use crate::expand::{split_words_raw, unquote};
use std::time::Duration;

/// Every instruction docker knows, upper case.
pub const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parser directives from the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub syntax: Option<String>,
    pub escape: char,
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A word as written (not yet expanded) and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub pos: Pos,
}

/// `--name[=value]` before an instruction's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: Option<Word>,
    pub pos: Pos,
}

/// Exec form (JSON array) or shell form (text handed to the SHELL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

/// A here-document (`<<EOF`, `<<-EOF`, `<<"EOF"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// False when the delimiter was quoted: no variable expansion in the body.
    pub expand: bool,
    /// `<<-`: leading tabs were removed from the body and the terminator.
    pub chomp: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Word,
    pub value: Word,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<Word>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromArgs {
    pub image: Word,
    pub alias: Option<String>,
    pub platform: Option<Word>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    pub flags: Vec<Flag>,
    pub command: Command,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    Path(Word),
    Heredoc(Heredoc),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    pub from: Option<Word>,
    pub chown: Option<Word>,
    pub chmod: Option<Word>,
    pub link: bool,
    pub flags: Vec<Flag>,
    pub sources: Vec<CopySource>,
    pub dest: Word,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTest {
    None,
    Cmd(Command),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckArgs {
    pub test: HealthTest,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    From(FromArgs),
    Arg(Vec<ArgDecl>),
    Run(RunArgs),
    Cmd(Command),
    Entrypoint(Command),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Expose(Vec<Word>),
    Workdir(Word),
    User(Word),
    Volume(Vec<Word>),
    Copy(CopyArgs),
    Add(CopyArgs),
    Shell(Vec<String>),
    Stopsignal(Word),
    Healthcheck(HealthcheckArgs),
    Onbuild(Box<Instruction>),
    Maintainer(Word),
}

/// One instruction: where it starts, its keyword (upper case), its text as
/// written after joining continuation lines (and heredoc bodies), and its typed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub pos: Pos,
    pub keyword: String,
    pub text: String,
    /// The arguments after the keyword (continuations joined), as written.
    pub args_text: String,
    pub kind: InstructionKind,
}

/// A build stage: its FROM and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    pub name: Option<String>,
    pub from: FromArgs,
    pub pos: Pos,
    pub instructions: Vec<Instruction>,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub file: String,
    pub directives: Directives,
    /// ARGs before the first FROM (usable only in FROM lines unless re-declared).
    pub global_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
    /// Non-fatal remarks (e.g. empty continuation lines), with positions.
    pub warnings: Vec<DockerfileError>,
}

impl Dockerfile {
    /// Find a stage by name (case-insensitive) or index.
    pub fn stage_by_ref(&self, r: &str) -> Option<usize> {
        let lower = r.to_ascii_lowercase();
        if let Some(s) = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(s.index);
        }
        r.parse::<usize>().ok().filter(|i| *i < self.stages.len())
    }
}

// ---------------------------------------------------------------------------

struct Seg {
    start: usize,
    line: u32,
    col: u32,
}

/// A logical line: text joined from physical lines, with a map back to positions.
struct Logical {
    text: String,
    segs: Vec<Seg>,
}

impl Logical {
    fn push(&mut self, s: &str, line: u32, col: u32) {
        self.segs.push(Seg {
            start: self.text.len(),
            line,
            col,
        });
        self.text.push_str(s);
    }

    fn pos_at(&self, off: usize) -> Pos {
        let off = off.min(self.text.len());
        let mut seg = &self.segs[0];
        for s in &self.segs {
            if s.start <= off {
                seg = s;
            }
        }
        let chars = self
            .text
            .get(seg.start..off)
            .map(|t| t.chars().count())
            .unwrap_or(0);
        Pos::new(seg.line, seg.col + chars as u32)
    }
}

struct Parser<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    i: usize,
    escape: char,
    warnings: Vec<DockerfileError>,
}

fn char_col(line: &str, byte_off: usize) -> u32 {
    line.get(..byte_off).map(|s| s.chars().count()).unwrap_or(0) as u32 + 1
}

/// Parse a Dockerfile. `file` is the name used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, DockerfileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let directives = parse_directives(file, &lines)?;
    let mut p = Parser {
        file,
        lines,
        i: 0,
        escape: directives.escape,
        warnings: Vec::new(),
    };
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    while let Some(instr) = p.next_instruction()? {
        match instr.kind {
            InstructionKind::From(from) => {
                if let Some(name) = &from.alias {
                    if stages
                        .iter()
                        .any(|s| s.name.as_deref() == Some(name.as_str()))
                    {
                        return Err(p.error(instr.pos, format!("duplicate stage name \"{name}\"")));
                    }
                }
                stages.push(Stage {
                    index: stages.len(),
                    name: from.alias.clone(),
                    from,
                    pos: instr.pos,
                    instructions: Vec::new(),
                });
            }
            InstructionKind::Arg(decls) if stages.is_empty() => global_args.extend(decls),
            _ => match stages.last_mut() {
                Some(stage) => stage.instructions.push(instr),
                None => {
                    return Err(p.error(
                        instr.pos,
                        format!(
                            "{} before the first FROM: only ARG may come before FROM",
                            instr.keyword
                        ),
                    ))
                }
            },
        }
    }
    if stages.is_empty() {
        let line = p.lines.len().max(1) as u32;
        return Err(p.error(
            Pos::new(line, 1),
            "expected a FROM instruction: a Dockerfile needs at least one build stage",
        ));
    }
    Ok(Dockerfile {
        file: file.to_string(),
        directives,
        global_args,
        stages,
        warnings: p.warnings,
    })
}

fn parse_directive_line(line: &str) -> Option<(String, String, usize)> {
    let t = line.trim_start();
    let rest = t.strip_prefix('#')?.trim_start();
    let name_len = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    if name_len == 0 || !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let name = &rest[..name_len];
    let after = rest[name_len..].trim_start().strip_prefix('=')?;
    let value = after.trim();
    if value.is_empty() {
        return None;
    }
    let value_off = line.len() - after.trim_start().len();
    Some((name.to_ascii_lowercase(), value.to_string(), value_off))
}

fn parse_directives(file: &str, lines: &[&str]) -> Result<Directives, DockerfileError> {
    let mut d = Directives::default();
    let mut seen: Vec<String> = Vec::new();
    for (idx, line) in lines.iter().enumerate() {
        let Some((name, value, off)) = parse_directive_line(line) else {
            break;
        };
        let pos = Pos::new(idx as u32 + 1, char_col(line, off));
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            continue; // unknown directives are comments
        }
        if seen.contains(&name) {
            return Err(DockerfileError::new(
                file,
                Pos::new(idx as u32 + 1, 1),
                format!("only one {name} parser directive can be used"),
            ));
        }
        seen.push(name.clone());
        match name.as_str() {
            "syntax" => d.syntax = Some(value),
            "check" => d.check = Some(value),
            _ => {
                d.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(DockerfileError::new(
                            file,
                            pos,
                            format!("invalid escape token '{other}': expected '\\' or '`'"),
                        ))
                    }
                }
            }
        }
    }
    Ok(d)
}

fn trim_continuation(s: &str, escape: char) -> (&str, bool) {
    let t = s.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(rest) => (rest, true),
        None => (s, false),
    }
}

fn is_comment(s: &str) -> bool {
    s.trim_start().starts_with('#')
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggest(word: &str) -> Option<&'static str> {
    let up = word.to_ascii_uppercase();
    if up.chars().count() > 16 {
        return None;
    }
    INSTRUCTIONS
        .iter()
        .map(|k| (distance(&up, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Flags each instruction accepts; `true` = may be given without a value.
fn allowed_flags(kw: &str) -> &'static [(&'static str, bool)] {
    match kw {
        "FROM" => &[("platform", false)],
        "RUN" => &[("mount", false), ("network", false), ("security", false)],
        "COPY" => &[
            ("from", false),
            ("chown", false),
            ("chmod", false),
            ("link", true),
            ("parents", true),
            ("exclude", false),
        ],
        "ADD" => &[
            ("chown", false),
            ("chmod", false),
            ("link", true),
            ("keep-git-dir", true),
            ("checksum", false),
            ("exclude", false),
        ],
        "HEALTHCHECK" => &[
            ("interval", false),
            ("timeout", false),
            ("start-period", false),
            ("start-interval", false),
            ("retries", false),
        ],
        _ => &[],
    }
}

/// Parse a Go duration (`1m30s`, `500ms`, `2h`, `0`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .count();
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .chars()
            .take_while(|c| !c.is_ascii_digit() && *c != '.')
            .map(char::len_utf8)
            .sum::<usize>();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mult = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
    }
    if !total.is_finite() || total > 1e12 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

impl<'a> Parser<'a> {
    fn error(&self, pos: Pos, msg: impl Into<String>) -> DockerfileError {
        DockerfileError::new(self.file, pos, msg)
    }

    fn next_instruction(&mut self) -> Result<Option<Instruction>, DockerfileError> {
        while self.i < self.lines.len() {
            let raw = self.lines[self.i];
            let lineno = self.i as u32 + 1;
            self.i += 1;
            let lead = raw.len() - raw.trim_start().len();
            let l = &raw[lead..];
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut logical = Logical {
                text: String::new(),
                segs: Vec::new(),
            };
            let (first, mut cont) = trim_continuation(l, self.escape);
            logical.push(first, lineno, char_col(raw, lead));
            while cont && self.i < self.lines.len() {
                let raw = self.lines[self.i];
                let lineno = self.i as u32 + 1;
                self.i += 1;
                if is_comment(raw) {
                    continue;
                }
                if raw.trim().is_empty() {
                    self.warnings.push(self.error(
                        Pos::new(lineno, 1),
                        "empty continuation line (deprecated): remove it or add a comment",
                    ));
                    continue;
                }
                let (part, c) = trim_continuation(raw, self.escape);
                cont = c;
                logical.push(part, lineno, 1);
            }
            if logical.text.trim().is_empty() {
                continue;
            }
            return self.parse_logical(&logical, 0, true).map(Some);
        }
        Ok(None)
    }

    /// Parse an instruction starting at byte `start` of the logical line.
    fn parse_logical(
        &mut self,
        lg: &Logical,
        start: usize,
        top: bool,
    ) -> Result<Instruction, DockerfileError> {
        let text = &lg.text[start..];
        let lead = text.len() - text.trim_start().len();
        let kw_start = start + lead;
        let body = &lg.text[kw_start..];
        let kw_len = body.find(char::is_whitespace).unwrap_or(body.len());
        let kw_raw = &body[..kw_len];
        let pos = lg.pos_at(kw_start);
        let keyword = kw_raw.to_ascii_uppercase();
        if !INSTRUCTIONS.contains(&keyword.as_str()) {
            let hint = suggest(kw_raw)
                .map(|k| format!(" (did you mean {k}?)"))
                .unwrap_or_default();
            let shown: String = kw_raw.chars().take(40).collect();
            return Err(self.error(pos, format!("unknown instruction \"{shown}\"{hint}")));
        }
        let after_kw = kw_start + kw_len;
        let rest = &lg.text[after_kw..];
        let args_start = after_kw + (rest.len() - rest.trim_start().len());
        let args_end = lg.text.trim_end().len().max(args_start);
        let mut a = ArgCursor {
            lg,
            off: args_start,
            end: args_end,
        };
        let kind = self.parse_kind(&keyword, &mut a, pos, top)?;
        let args_text = lg.text[args_start..args_end].to_string();
        let mut text = lg.text[kw_start..args_end].to_string();
        for h in heredocs_of(&kind) {
            text.push('\n');
            text.push_str(&h.content);
            text.push_str(&h.name);
        }
        Ok(Instruction {
            pos,
            keyword,
            text,
            args_text,
            kind,
        })
    }

    fn need_args(&self, kw: &str, a: &ArgCursor, pos: Pos) -> Result<(), DockerfileError> {
        if a.rest().trim().is_empty() {
            return Err(self.error(pos, format!("{kw} requires at least one argument")));
        }
        Ok(())
    }

    fn parse_flags(&self, kw: &str, a: &mut ArgCursor) -> Result<Vec<Flag>, DockerfileError> {
        let allowed = allowed_flags(kw);
        let mut flags = Vec::new();
        loop {
            a.skip_ws();
            let rest = a.rest();
            if !rest.starts_with("--") {
                break;
            }
            let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[..len];
            let pos = a.pos();
            if word == "--" {
                a.off += len;
                break;
            }
            let (name, value) = match word[2..].split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (word[2..].to_string(), None),
            };
            let Some((_, boolean)) = allowed.iter().find(|(n, _)| *n == name) else {
                let expected = if allowed.is_empty() {
                    format!("{kw} takes no flags")
                } else {
                    let names: Vec<String> =
                        allowed.iter().map(|(n, _)| format!("--{n}")).collect();
                    format!("expected one of {}", names.join(", "))
                };
                let shown: String = word.chars().take(40).collect();
                return Err(self.error(pos, format!("unknown flag {shown} for {kw}: {expected}")));
            };
            if value.is_none() && !boolean {
                return Err(self.error(
                    pos,
                    format!("flag --{name} for {kw} needs a value: --{name}=<value>"),
                ));
            }
            if flags.iter().any(|f: &Flag| f.name == name) && name != "exclude" && name != "mount" {
                return Err(self.error(pos, format!("flag --{name} given twice")));
            }
            let value_pos = a.pos_at(a.off + 3 + name.len());
            flags.push(Flag {
                name,
                value: value.map(|text| Word {
                    text,
                    pos: value_pos,
                }),
                pos,
            });
            a.off += len;
        }
        a.skip_ws();
        Ok(flags)
    }

    fn parse_kind(
        &mut self,
        kw: &str,
        a: &mut ArgCursor,
        pos: Pos,
        top: bool,
    ) -> Result<InstructionKind, DockerfileError> {
        let esc = self.escape;
        match kw {
            "FROM" => {
                let flags = self.parse_flags(kw, a)?;
                self.need_args(kw, a, pos)?;
                let words = a.whitespace_words();
                let platform = flags
                    .into_iter()
                    .find(|f| f.name == "platform")
                    .and_then(|f| f.value);
                match words.len() {
                    1 => Ok(InstructionKind::From(FromArgs {
                        image: words[0].clone(),
                        alias: None,
                        platform,
                    })),
                    3 if words[1].text.eq_ignore_ascii_case("as") => {
                        let name = words[2].text.to_ascii_lowercase();
                        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                            && name.chars().all(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                            });
                        if !valid {
                            return Err(self.error(
                                words[2].pos,
                                format!("invalid stage name \"{}\": expected a letter followed by letters, digits, '-', '_' or '.'", words[2].text),
                            ));
                        }
                        Ok(InstructionKind::From(FromArgs {
                            image: words[0].clone(),
                            alias: Some(name),
                            platform,
                        }))
                    }
                    3 => Err(self.error(
                        words[1].pos,
                        format!(
                            "expected AS after the image in FROM, found \"{}\"",
                            words[1].text
                        ),
                    )),
                    2 => Err(self.error(
                        words[1].pos,
                        format!(
                            "expected FROM <image> [AS <name>], found an extra word \"{}\"",
                            words[1].text
                        ),
                    )),
                    _ => Err(self.error(
                        words[3].pos,
                        "expected FROM <image> [AS <name>]: too many arguments",
                    )),
                }
            }
            "ARG" => {
                self.need_args(kw, a, pos)?;
                let mut decls = Vec::new();
                for (off, w) in split_words_raw(a.rest(), esc) {
                    let wpos = a.pos_at(a.off + off);
                    let (name, default) = match w.split_once('=') {
                        Some((n, v)) => (
                            n.to_string(),
                            Some(Word {
                                text: v.to_string(),
                                pos: a.pos_at(a.off + off + n.len() + 1),
                            }),
                        ),
                        None => (w.clone(), None),
                    };
                    if name.is_empty() {
                        return Err(self.error(
                            wpos,
                            "ARG names can not be blank: expected ARG <name>[=<default>]",
                        ));
                    }
                    decls.push(ArgDecl {
                        name,
                        default,
                        pos: wpos,
                    });
                }
                Ok(InstructionKind::Arg(decls))
            }
            "RUN" => {
                let flags = self.parse_flags(kw, a)?;
                self.need_args(kw, a, pos)?;
                let (command, heredocs) = match parse_json_array(a.rest()) {
                    Some(v) => (Command::Exec(v), Vec::new()),
                    None => {
                        let heredocs = if top {
                            self.read_heredocs(a)?
                        } else {
                            Vec::new()
                        };
                        (Command::Shell(a.rest().to_string()), heredocs)
                    }
                };
                Ok(InstructionKind::Run(RunArgs {
                    flags,
                    command,
                    heredocs,
                }))
            }
            "CMD" | "ENTRYPOINT" => {
                self.need_args(kw, a, pos)?;
                let cmd = match parse_json_array(a.rest()) {
                    Some(v) => Command::Exec(v),
                    None => Command::Shell(a.rest().to_string()),
                };
                Ok(if kw == "CMD" {
                    InstructionKind::Cmd(cmd)
                } else {
                    InstructionKind::Entrypoint(cmd)
                })
            }
            "ENV" | "LABEL" => {
                self.need_args(kw, a, pos)?;
                let kvs = self.parse_name_val(kw, a)?;
                Ok(if kw == "ENV" {
                    InstructionKind::Env(kvs)
                } else {
                    InstructionKind::Label(kvs)
                })
            }
            "EXPOSE" => {
                self.need_args(kw, a, pos)?;
                Ok(InstructionKind::Expose(a.whitespace_words()))
            }
            "WORKDIR" | "USER" | "STOPSIGNAL" | "MAINTAINER" => {
                self.need_args(kw, a, pos)?;
                let w = Word {
                    text: a.rest().to_string(),
                    pos: a.pos(),
                };
                if kw == "STOPSIGNAL" && a.whitespace_words().len() != 1 {
                    return Err(self.error(pos, "STOPSIGNAL requires exactly one argument"));
                }
                Ok(match kw {
                    "WORKDIR" => InstructionKind::Workdir(w),
                    "USER" => InstructionKind::User(w),
                    "STOPSIGNAL" => InstructionKind::Stopsignal(w),
                    _ => InstructionKind::Maintainer(w),
                })
            }
            "VOLUME" => {
                self.need_args(kw, a, pos)?;
                let words = match parse_json_array(a.rest()) {
                    Some(v) => v
                        .into_iter()
                        .map(|text| Word { text, pos: a.pos() })
                        .collect(),
                    None => a.whitespace_words(),
                };
                if let Some(w) = words.iter().find(|w| w.text.trim().is_empty()) {
                    return Err(self.error(w.pos, "VOLUME specified can not be an empty string"));
                }
                Ok(InstructionKind::Volume(words))
            }
            "COPY" | "ADD" => self.parse_copy(kw, a, pos, top),
            "SHELL" => {
                self.need_args(kw, a, pos)?;
                match parse_json_array(a.rest()) {
                    Some(v) if !v.is_empty() => Ok(InstructionKind::Shell(v)),
                    _ => Err(self.error(a.pos(), "SHELL requires the arguments to be in JSON form: expected SHELL [\"executable\", \"param\"]")),
                }
            }
            "HEALTHCHECK" => self.parse_healthcheck(a, pos),
            "ONBUILD" => {
                self.need_args(kw, a, pos)?;
                let inner_pos = a.pos();
                let first = a
                    .rest()
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                match first.as_str() {
                    "ONBUILD" => {
                        return Err(self.error(
                            inner_pos,
                            "chaining ONBUILD via ONBUILD ONBUILD isn't allowed",
                        ))
                    }
                    "FROM" | "MAINTAINER" => {
                        return Err(self.error(
                            inner_pos,
                            format!("{first} isn't allowed as an ONBUILD trigger"),
                        ))
                    }
                    _ => {}
                }
                let inner = self.parse_logical(a.lg, a.off, false)?;
                Ok(InstructionKind::Onbuild(Box::new(inner)))
            }
            _ => Err(self.error(pos, format!("unknown instruction \"{kw}\""))),
        }
    }

    fn parse_name_val(
        &self,
        kw: &str,
        a: &mut ArgCursor,
    ) -> Result<Vec<KeyValue>, DockerfileError> {
        let words = split_words_raw(a.rest(), self.escape);
        let Some((_, first)) = words.first() else {
            return Err(self.error(a.pos(), format!("{kw} requires at least one argument")));
        };
        if !first.contains('=') {
            // legacy form: KEY name value
            let rest = a.rest();
            let klen = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let after = &rest[klen..];
            let value = after.trim_start();
            if value.is_empty() {
                return Err(self.error(a.pos(), format!("{kw} must have two arguments: expected {kw} <key>=<value> or {kw} <key> <value>")));
            }
            let voff = a.off + klen + (after.len() - value.len());
            return Ok(vec![KeyValue {
                key: Word {
                    text: rest[..klen].to_string(),
                    pos: a.pos(),
                },
                value: Word {
                    text: value.to_string(),
                    pos: a.pos_at(voff),
                },
            }]);
        }
        let mut out = Vec::new();
        for (off, w) in words {
            let wpos = a.pos_at(a.off + off);
            let Some((k, v)) = w.split_once('=') else {
                return Err(self.error(
                    wpos,
                    format!("syntax error - can't find = in \"{w}\": expected {kw} <name>=<value>"),
                ));
            };
            if k.is_empty() {
                return Err(self.error(
                    wpos,
                    format!("{kw} names can not be blank: expected <name>=<value>"),
                ));
            }
            out.push(KeyValue {
                key: Word {
                    text: k.to_string(),
                    pos: wpos,
                },
                value: Word {
                    text: v.to_string(),
                    pos: a.pos_at(a.off + off + k.len() + 1),
                },
            });
        }
        Ok(out)
    }

    fn parse_copy(
        &mut self,
        kw: &str,
        a: &mut ArgCursor,
        pos: Pos,
        top: bool,
    ) -> Result<InstructionKind, DockerfileError> {
        let flags = self.parse_flags(kw, a)?;
        self.need_args(kw, a, pos)?;
        let (words, heredocs) = match parse_json_array(a.rest()) {
            Some(v) => (
                v.into_iter()
                    .map(|text| Word { text, pos: a.pos() })
                    .collect::<Vec<_>>(),
                Vec::new(),
            ),
            None => {
                let hds = if top {
                    self.read_heredocs(a)?
                } else {
                    Vec::new()
                };
                (a.whitespace_words(), hds)
            }
        };
        if words.len() < 2 {
            return Err(self.error(pos, format!("{kw} requires at least two arguments, but only one was provided. Destination could not be determined")));
        }
        let mut hd_iter = heredocs.into_iter();
        let mut sources = Vec::new();
        let (dest, srcs) = words
            .split_last()
            .ok_or_else(|| self.error(pos, format!("{kw} requires at least two arguments")))?;
        for w in srcs {
            if parse_heredoc_word(&w.text, self.escape).is_some() {
                if let Some(h) = hd_iter.next() {
                    sources.push(CopySource::Heredoc(h));
                    continue;
                }
            }
            sources.push(CopySource::Path(w.clone()));
        }
        let get = |n: &str| {
            flags
                .iter()
                .find(|f| f.name == n)
                .and_then(|f| f.value.clone())
        };
        let link = flags
            .iter()
            .any(|f| f.name == "link" && f.value.as_ref().is_none_or(|v| v.text != "false"));
        let args = CopyArgs {
            from: get("from"),
            chown: get("chown"),
            chmod: get("chmod"),
            link,
            flags: flags.clone(),
            sources,
            dest: dest.clone(),
        };
        if kw == "ADD" {
            Ok(InstructionKind::Add(args))
        } else {
            Ok(InstructionKind::Copy(args))
        }
    }

    fn parse_healthcheck(
        &mut self,
        a: &mut ArgCursor,
        pos: Pos,
    ) -> Result<InstructionKind, DockerfileError> {
        let flags = self.parse_flags("HEALTHCHECK", a)?;
        self.need_args("HEALTHCHECK", a, pos)?;
        let rest = a.rest().to_string();
        let tlen = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let typ = rest[..tlen].to_ascii_uppercase();
        let tpos = a.pos();
        a.off += tlen;
        a.skip_ws();
        let test = match typ.as_str() {
            "NONE" => {
                if !a.rest().is_empty() || !flags.is_empty() {
                    return Err(self.error(tpos, "HEALTHCHECK NONE takes no arguments or flags"));
                }
                HealthTest::None
            }
            "CMD" => {
                if a.rest().is_empty() {
                    return Err(self.error(tpos, "missing command after HEALTHCHECK CMD"));
                }
                match parse_json_array(a.rest()) {
                    Some(v) => HealthTest::Cmd(Command::Exec(v)),
                    None => HealthTest::Cmd(Command::Shell(a.rest().to_string())),
                }
            }
            _ => {
                let shown: String = rest[..tlen].chars().take(40).collect();
                return Err(self.error(
                    tpos,
                    format!("unknown type \"{shown}\" in HEALTHCHECK: expected CMD or NONE"),
                ));
            }
        };
        let mut hc = HealthcheckArgs {
            test,
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        };
        for f in &flags {
            let Some(v) = &f.value else { continue };
            if f.name == "retries" {
                match v.text.parse::<i64>() {
                    Ok(n) if n >= 0 && n <= u32::MAX as i64 => hc.retries = Some(n as u32),
                    Ok(n) => {
                        return Err(self.error(v.pos, format!("--retries cannot be negative ({n})")))
                    }
                    Err(_) => {
                        return Err(self.error(
                            v.pos,
                            format!(
                                "invalid --retries value \"{}\": expected a whole number",
                                v.text
                            ),
                        ))
                    }
                }
                continue;
            }
            let d = parse_go_duration(&v.text).ok_or_else(|| {
                self.error(v.pos, format!("invalid --{} duration \"{}\": expected a duration like 30s, 1m30s or 500ms", f.name, v.text))
            })?;
            if !d.is_zero() && d < Duration::from_millis(1) {
                return Err(self.error(
                    v.pos,
                    format!("--{} \"{}\" cannot be less than 1ms", f.name, v.text),
                ));
            }
            match f.name.as_str() {
                "interval" => hc.interval = Some(d),
                "timeout" => hc.timeout = Some(d),
                "start-period" => hc.start_period = Some(d),
                _ => hc.start_interval = Some(d),
            }
        }
        Ok(InstructionKind::Healthcheck(hc))
    }

    /// Read the bodies of the here-documents named on this line from the lines after it.
    fn read_heredocs(&mut self, a: &ArgCursor) -> Result<Vec<Heredoc>, DockerfileError> {
        let mut out = Vec::new();
        for (off, w) in split_words_raw(a.rest(), self.escape) {
            let Some((name, chomp, expand)) = parse_heredoc_word(&w, self.escape) else {
                continue;
            };
            let hpos = a.pos_at(a.off + off);
            let mut content = String::new();
            let mut terminated = false;
            while self.i < self.lines.len() {
                let line = self.lines[self.i];
                self.i += 1;
                let cand = if chomp {
                    line.trim_start_matches('\t')
                } else {
                    line
                };
                if cand == name {
                    terminated = true;
                    break;
                }
                content.push_str(if chomp { cand } else { line });
                content.push('\n');
            }
            if !terminated {
                return Err(self.error(
                    hpos,
                    format!("unterminated heredoc <<{name}: expected a line \"{name}\" before the end of the file"),
                ));
            }
            out.push(Heredoc {
                name,
                content,
                expand,
                chomp,
                pos: hpos,
            });
        }
        Ok(out)
    }
}

fn heredocs_of(kind: &InstructionKind) -> Vec<&Heredoc> {
    match kind {
        InstructionKind::Run(r) => r.heredocs.iter().collect(),
        InstructionKind::Copy(c) | InstructionKind::Add(c) => c
            .sources
            .iter()
            .filter_map(|s| match s {
                CopySource::Heredoc(h) => Some(h),
                CopySource::Path(_) => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF` → (name, chomp, expand).
pub fn parse_heredoc_word(word: &str, escape: char) -> Option<(String, bool, bool)> {
    let w = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = w.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let name = unquote(rest, escape).ok()?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let expand = !rest.contains(['\'', '"']);
    Some((name, chomp, expand))
}

/// docker's `parseMaybeJSON`: a JSON array of strings, or None for shell form.
pub fn parse_json_array(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') || !t.ends_with(']') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

struct ArgCursor<'l> {
    lg: &'l Logical,
    off: usize,
    end: usize,
}

impl ArgCursor<'_> {
    fn rest(&self) -> &str {
        self.lg.text.get(self.off..self.end).unwrap_or("")
    }
    fn pos(&self) -> Pos {
        self.lg.pos_at(self.off)
    }
    fn pos_at(&self, off: usize) -> Pos {
        self.lg.pos_at(off)
    }
    fn skip_ws(&mut self) {
        let r = self.rest();
        self.off += r.len() - r.trim_start().len();
    }
    fn whitespace_words(&self) -> Vec<Word> {
        let rest = self.rest();
        let mut out = Vec::new();
        let mut start = None;
        for (i, c) in rest
            .char_indices()
            .chain(std::iter::once((rest.len(), ' ')))
        {
            match (c.is_whitespace(), start) {
                (true, Some(s)) => {
                    out.push(Word {
                        text: rest[s..i].to_string(),
                        pos: self.pos_at(self.off + s),
                    });
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        out
    }
}
