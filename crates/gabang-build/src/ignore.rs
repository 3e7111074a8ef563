//! `.dockerignore` with docker's rules (moby/patternmatcher + ignorefile):
//! Go `filepath.Match` syntax (`*`, `?`, `[...]`, `\` escapes) plus `**`,
//! `!` exceptions where the last matching pattern wins, patterns cleaned
//! (`./a` → `a`, `/a` → `a`, `a/../b` → `b`), `#` comments, and a path is
//! excluded when it or any parent directory matches.
//!
//! Matching ports moby/patternmatcher's `compile` character for character
//! (pattern → regular expression, run by the `regex` crate, plus its
//! exact/prefix/suffix shortcuts and their quirks); syntax is checked like
//! Go's `filepath.Match`. `tests/data/patternmatcher.jsonl` holds 4000 cases
//! answered by moby's own code, and the tests agree with every one.
//! [`Glob`] is Go's `filepath.Match` (used for COPY sources), hand-written
//! and matched by dynamic programming, so no pattern takes exponential time.

/// A `.dockerignore` syntax error, with the 1-based line (0 when not from a file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore:{line}: invalid pattern \"{pattern}\": {reason}")]
pub struct PatternError {
    pub line: u32,
    pub pattern: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Star,
    One,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
    /// `**` followed by more pattern: regex `(.*/)?`
    AnyDirs,
    /// `**` at the end: regex `.*`
    AnyRest,
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    /// Compile a pattern; `double_star` enables `**` (dockerignore); without it,
    /// `**` is two `*` (Go `filepath.Match`, COPY sources).
    pub fn new(pattern: &str, double_star: bool) -> Result<Glob, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if double_star && chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    toks.push(if i >= chars.len() {
                        Tok::AnyRest
                    } else {
                        Tok::AnyDirs
                    });
                }
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::One),
                '\\' => match chars.get(i) {
                    Some(&n) => {
                        i += 1;
                        toks.push(Tok::Lit(n));
                    }
                    None => {
                        return Err("trailing escape '\\': expected a character after it".into())
                    }
                },
                '[' => {
                    // Go filepath.Match: `[` `^`? (lo[-hi])+ `]`; '-' and ']' must be escaped
                    // inside ranges, and the class must be closed
                    let mut negated = false;
                    if chars.get(i) == Some(&'^') {
                        negated = true;
                        i += 1;
                    }
                    let get_esc = |i: &mut usize| -> Result<char, String> {
                        let bad = || {
                            "malformed character class: expected a character or range before ']'"
                                .to_string()
                        };
                        let mut c = *chars
                            .get(*i)
                            .ok_or("unterminated character class: expected ']'")?;
                        if c == '-' || c == ']' {
                            return Err(bad());
                        }
                        if c == '\\' {
                            *i += 1;
                            c = *chars
                                .get(*i)
                                .ok_or("unterminated character class: expected ']'")?;
                        }
                        *i += 1;
                        if *i >= chars.len() {
                            return Err("unterminated character class: expected ']'".into());
                        }
                        Ok(c)
                    };
                    let mut items = Vec::new();
                    loop {
                        if chars.get(i) == Some(&']') && !items.is_empty() {
                            i += 1;
                            break;
                        }
                        let lo = get_esc(&mut i)?;
                        let mut hi = lo;
                        if chars.get(i) == Some(&'-') {
                            i += 1;
                            hi = get_esc(&mut i)?;
                        }
                        items.push((lo, hi));
                    }
                    toks.push(Tok::Class { negated, items });
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Glob { toks })
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let s: Vec<char> = text.chars().collect();
        let n = s.len();
        // reach[j]: pattern prefix consumed so far can end at text position j
        let mut reach = vec![false; n + 1];
        reach[0] = true;
        for tok in &self.toks {
            let mut next = vec![false; n + 1];
            match tok {
                Tok::Lit(c) => {
                    for j in 0..n {
                        if reach[j] && s[j] == *c {
                            next[j + 1] = true;
                        }
                    }
                }
                Tok::One => {
                    for j in 0..n {
                        if reach[j] && s[j] != '/' {
                            next[j + 1] = true;
                        }
                    }
                }
                Tok::Class { negated, items } => {
                    for j in 0..n {
                        let inside = items.iter().any(|(lo, hi)| *lo <= s[j] && s[j] <= *hi);
                        if reach[j] && inside != *negated {
                            next[j + 1] = true;
                        }
                    }
                }
                Tok::Star => {
                    let mut on = false;
                    for j in 0..=n {
                        on = reach[j] || (on && j > 0 && s[j - 1] != '/');
                        next[j] = on;
                    }
                }
                Tok::AnyRest => {
                    let mut on = false;
                    for j in 0..=n {
                        on = on || reach[j];
                        next[j] = on;
                    }
                }
                Tok::AnyDirs => {
                    // empty, or any text ending in '/'
                    let mut seen = false;
                    for j in 0..=n {
                        if j > 0 && s[j - 1] == '/' && seen {
                            next[j] = true;
                        }
                        seen = seen || reach[j];
                        if reach[j] {
                            next[j] = true;
                        }
                    }
                }
            }
            reach = next;
        }
        reach[n]
    }
}

/// Go's `filepath.Clean` for slash-separated relative paths.
pub fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// How moby/patternmatcher matches one compiled pattern.
#[derive(Debug, Clone)]
enum MatchKind {
    Exact,
    /// `abc/**`: the text before the trailing `**` is a prefix
    Prefix(String),
    /// `**/abc`, `**abc`: the text after the leading `**` is a suffix
    Suffix(String),
    Regex(regex::Regex),
}

/// moby/patternmatcher's `compile`, character for character: the pattern
/// becomes a regular expression (`*` → `[^/]*`, `?` → `[^/]`, `**` →
/// `(.*/)?` or `.*` at the end, `.+()|{}$` escaped, `[`/`]` passed through),
/// with exact/prefix/suffix shortcuts whose quirks docker users see
/// (e.g. `**.go` is a plain suffix match).
fn compile_moby(p: &str) -> Result<MatchKind, String> {
    #[derive(PartialEq)]
    enum T {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let chars: Vec<char> = p.chars().collect();
    let mut re = String::from("^");
    let mut t = T::Exact;
    let mut pos = 0;
    let mut i = 0;
    while pos < chars.len() {
        let ch = chars[pos];
        pos += 1;
        if ch == '*' {
            if chars.get(pos) == Some(&'*') {
                pos += 1;
                if chars.get(pos) == Some(&'/') {
                    pos += 1;
                }
                if pos >= chars.len() {
                    if t == T::Exact {
                        t = T::Prefix;
                    } else {
                        re.push_str(".*");
                        t = T::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    t = T::Regex;
                }
                if i == 0 {
                    t = T::Suffix;
                }
            } else {
                re.push_str("[^/]*");
                t = T::Regex;
            }
        } else if ch == '?' {
            re.push_str("[^/]");
            t = T::Regex;
        } else if ".+()|{}$".contains(ch) {
            re.push('\\');
            re.push(ch);
        } else if ch == '\\' {
            match chars.get(pos) {
                Some(&n) => {
                    pos += 1;
                    re.push('\\');
                    re.push(n);
                    t = T::Regex;
                }
                None => re.push_str("\\\\"),
            }
        } else if ch == '[' || ch == ']' {
            re.push(ch);
            t = T::Regex;
        } else {
            re.push(ch);
        }
        i += 1;
    }
    match t {
        T::Exact => Ok(MatchKind::Exact),
        T::Prefix => Ok(MatchKind::Prefix(
            p.strip_suffix("**").unwrap_or(p).to_string(),
        )),
        T::Suffix => Ok(MatchKind::Suffix(p.get(2..).unwrap_or("").to_string())),
        T::Regex => {
            re.push('$');
            regex::Regex::new(&go_class_syntax(&re))
                .map(MatchKind::Regex)
                .map_err(|e| format!("syntax error in pattern: {e}"))
        }
    }
}

/// Go's RE2 reads `[` inside a bracket expression as a literal; Rust's regex
/// reads it as a nested class (and `&&`, `~~` as set operations). Escape
/// them so the expression means what it means to Go.
fn go_class_syntax(re: &str) -> String {
    let chars: Vec<char> = re.chars().collect();
    let mut out = String::with_capacity(re.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push(c);
            if let Some(&n) = chars.get(i + 1) {
                out.push(n);
            }
            i += 2;
            continue;
        }
        if !in_class {
            out.push(c);
            if c == '[' {
                in_class = true;
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
        } else {
            match c {
                ']' => {
                    in_class = false;
                    out.push(c);
                }
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        i += 1;
    }
    out
}

/// One `.dockerignore` line, compiled.
#[derive(Debug, Clone)]
pub struct IgnorePattern {
    /// The cleaned pattern without its `!`.
    pub pattern: String,
    pub exclusion: bool,
    kind: MatchKind,
}

impl PartialEq for IgnorePattern {
    fn eq(&self, o: &Self) -> bool {
        self.pattern == o.pattern && self.exclusion == o.exclusion
    }
}

impl Eq for IgnorePattern {}

impl IgnorePattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.pattern,
            MatchKind::Prefix(pre) => path.starts_with(pre.as_str()),
            MatchKind::Suffix(suf) => {
                path.ends_with(suf.as_str()) || suf.strip_prefix('/').is_some_and(|s| s == path)
            }
            MatchKind::Regex(re) => re.is_match(path),
        }
    }
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dockerignore {
    pub patterns: Vec<IgnorePattern>,
}

impl Dockerignore {
    /// Parse `.dockerignore` text (docker's ignorefile.ReadAll rules).
    pub fn parse(text: &str) -> Result<Dockerignore, PatternError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let mut p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
            }
            let mut cleaned = if p.is_empty() {
                String::new()
            } else {
                clean_path(p)
            };
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let err = |reason: String| PatternError {
                line: idx as u32 + 1,
                pattern: raw.to_string(),
                reason,
            };
            if exclusion && cleaned.is_empty() {
                return Err(err(
                    "illegal exclusion pattern \"!\": expected a pattern after '!'".into(),
                ));
            }
            // syntax as Go's filepath.Match checks it, then moby's own compile
            Glob::new(&cleaned, false).map_err(err)?;
            let kind = compile_moby(&cleaned).map_err(err)?;
            patterns.push(IgnorePattern {
                pattern: cleaned,
                exclusion,
                kind,
            });
        }
        Ok(Dockerignore { patterns })
    }

    /// Build from pattern strings as they would appear in the file.
    pub fn from_patterns(lines: &[&str]) -> Result<Dockerignore, PatternError> {
        Dockerignore::parse(&lines.join("\n"))
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any `!` exception exists (a walker may then not skip excluded directories).
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// docker's `MatchesOrParentMatches`: is `path` (relative, slash-separated)
    /// excluded from the context?
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean_path(path);
        let parent = match path.rfind('/') {
            Some(i) => &path[..i],
            None => ".",
        };
        let parent_dirs: Vec<&str> = if parent == "." {
            Vec::new()
        } else {
            parent.split('/').collect()
        };
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(&path);
            if !hit {
                for i in 0..parent_dirs.len() {
                    if p.matches(&parent_dirs[..=i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether an excluded directory must still be walked because an exception
    /// could re-include something below it (docker walks into it in that case).
    pub fn must_walk_excluded_dir(&self, dir: &str) -> bool {
        let dir = clean_path(dir);
        self.patterns.iter().any(|p| {
            if !p.exclusion {
                return false;
            }
            // an exception whose literal prefix is inside (or above) this dir,
            // or one that starts with a wildcard
            let lit: String = p
                .pattern
                .chars()
                .take_while(|c| !"*?[\\".contains(*c))
                .collect();
            lit.is_empty()
                || lit.starts_with(&format!("{dir}/"))
                || format!("{dir}/").starts_with(&lit)
                || lit == dir
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str, s: &str) -> bool {
        Glob::new(p, false).map(|g| g.matches(s)).unwrap_or(false)
    }

    /// Go's filepath.Match table (path/filepath match_test.go), minus error rows.
    #[test]
    fn go_filepath_match_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(glob(p, s), *want, "pattern {p:?} on {s:?}");
        }
        for bad in ["[", "[^", "[^bc", "a[", "ab[", "[]a]", "[a-", "\\"] {
            assert!(
                Glob::new(bad, false).is_err(),
                "pattern {bad:?} should be an error"
            );
        }
    }

    fn excluded(patterns: &[&str], path: &str) -> bool {
        Dockerignore::from_patterns(patterns)
            .map(|d| d.is_excluded(path))
            .unwrap_or(false)
    }

    /// Cases from moby/patternmatcher's TestMatches / TestMatchesWithMalformedPatterns
    /// (regex semantics of the compiled pattern).
    #[test]
    fn patternmatcher_matches_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
        ];
        for (p, s, want) in cases {
            let d = Dockerignore::from_patterns(&[p]).expect("valid pattern");
            assert_eq!(d.is_excluded(s), *want, "pattern {p:?} on {s:?}");
        }
    }

    /// docker's exclusion semantics: parents, exceptions, order, cleaning.
    #[test]
    fn dockerignore_semantics() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["fileutils.go"], "fileutils.go", true),
            (&["*.go"], "fileutils.go", true),
            (&["*.go"], "dir/fileutils.go", false),
            (&["**/*.go"], "dir/fileutils.go", true),
            (&["*.go", "!fileutils.go"], "fileutils.go", false),
            (&["*.go", "!fileutils.go"], "other.go", true),
            (&["!fileutils.go", "*.go"], "fileutils.go", true),
            (&["docs"], "docs/readme.md", true),
            (&["docs"], "docs", true),
            (&["docs"], "docsx", false),
            (&["docs/"], "docs/a", true),
            (&["/docs"], "docs/a", true),
            (&["./docs"], "docs/a", true),
            (&["docs/../src"], "src/main.rs", true),
            (&["docs", "!docs/keep.md"], "docs/keep.md", false),
            (&["docs", "!docs/keep.md"], "docs/other.md", true),
            (&["docs/*", "!docs/keep.md"], "docs/keep.md", false),
            (&["*", "!src"], "src/main.rs", false),
            (&["*", "!src"], "README", true),
            (&["*", "!src", "src/target"], "src/target/x", true),
            (&["dir/**/file"], "dir/a/b/file", true),
            (&["dir/**/file"], "dir/file", true),
            (&["# comment", "x"], "# comment", false),
            (&["  spaced.txt  "], "spaced.txt", true),
            (&["!  spaced.txt", "*.txt"], "spaced.txt", true),
            (&["a/b"], "a/b/c/d", true),
            (&["a/b"], "a", false),
            (&[".git"], ".git/config", true),
            (
                &["node_modules", "!node_modules/keep/**"],
                "node_modules/keep/a/b",
                false,
            ),
            (
                &["node_modules", "!node_modules/keep/**"],
                "node_modules/x",
                true,
            ),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "README-secret.md",
                true,
            ),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "README-public.md",
                false,
            ),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "CHANGES.md",
                true,
            ),
        ];
        for (pats, path, want) in cases {
            assert_eq!(excluded(pats, path), *want, "patterns {pats:?} on {path:?}");
        }
    }

    #[test]
    fn bad_pattern_errors_name_the_line() {
        let e = Dockerignore::parse("ok\n# c\nbad[\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            ".dockerignore:3: invalid pattern \"bad[\": unterminated character class: expected ']'"
        );
    }

    #[test]
    fn walk_into_excluded_dir_only_for_exceptions() {
        let d = Dockerignore::from_patterns(&["docs", "!docs/keep.md"]).unwrap();
        assert!(d.must_walk_excluded_dir("docs"));
        assert!(!d.must_walk_excluded_dir("target"));
        let d = Dockerignore::from_patterns(&["target"]).unwrap();
        assert!(!d.must_walk_excluded_dir("target"));
    }

    #[test]
    fn clean_path_like_go() {
        for (i, o) in [
            ("a/b/../c", "a/c"),
            ("./a", "a"),
            ("/a/", "/a"),
            ("..", ".."),
            ("a/../..", ".."),
            ("", "."),
            ("//a//b", "/a/b"),
            ("/..", "/"),
        ] {
            assert_eq!(clean_path(i), o, "{i}");
        }
    }
}
