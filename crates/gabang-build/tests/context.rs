//! Build context on a real filesystem: globs, .dockerignore, the root
//! boundary, symlinks, destination rules, and the persisted stat cache.

use gabang_build::context::*;
use gabang_build::ignore::Dockerignore;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn ctx_with(root: &Path, ignore: &[&str]) -> BuildContext {
    BuildContext::with_ignore(
        root,
        Dockerignore::from_patterns(ignore).unwrap(),
        StatCache::in_memory(),
    )
    .unwrap()
}

fn tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "a.txt", "a");
    write(r, "b.txt", "b");
    write(r, "c.md", "c");
    write(r, "src/main.rs", "fn main() {}");
    write(r, "src/lib.rs", "// lib");
    write(r, "src/nested/deep.rs", "// deep");
    write(r, "docs/keep.md", "keep");
    write(r, "docs/drop.md", "drop");
    write(r, "target/big.bin", "xxxx");
    d
}

fn paths(r: &[ResolvedSource]) -> Vec<&str> {
    r.iter().map(|s| s.path.as_str()).collect()
}

#[test]
fn globs_resolve_like_docker() {
    let d = tree();
    let c = ctx_with(d.path(), &[]);
    assert_eq!(
        paths(&c.resolve_sources(&["*.txt".into()]).unwrap()),
        vec!["a.txt", "b.txt"]
    );
    assert_eq!(
        paths(&c.resolve_sources(&["?.md".into()]).unwrap()),
        vec!["c.md"]
    );
    assert_eq!(
        paths(&c.resolve_sources(&["[ab].txt".into()]).unwrap()),
        vec!["a.txt", "b.txt"]
    );
    assert_eq!(
        paths(&c.resolve_sources(&["src/*.rs".into()]).unwrap()),
        vec!["src/lib.rs", "src/main.rs"]
    );
    assert_eq!(
        paths(&c.resolve_sources(&["*/keep.md".into()]).unwrap()),
        vec!["docs/keep.md"]
    );
    // `*` does not cross '/'
    assert_eq!(
        paths(&c.resolve_sources(&["src/*".into()]).unwrap()),
        vec!["src/lib.rs", "src/main.rs", "src/nested"]
    );
    let r = c
        .resolve_sources(&["./src/".into(), "/a.txt".into(), ".".into()])
        .unwrap();
    assert_eq!(paths(&r), vec!["src", "a.txt", "."]);
    assert!(r[0].is_dir && !r[1].is_dir && r[2].is_dir);
    let e = c.resolve_sources(&["*.nope".into()]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "*.nope: no files in the build context match this pattern"
    );
    let e = c.resolve_sources(&["missing.txt".into()]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("missing.txt: not found in the build context"),
        "{e}"
    );
}

#[test]
fn outside_the_root_is_refused() {
    let d = tree();
    let c = ctx_with(d.path(), &[]);
    for bad in ["../x", "..", "src/../../x", "a/../../etc/passwd"] {
        let e = c.resolve_sources(&[bad.to_string()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{bad}: forbidden path outside the build context (sources are relative to the context root)")
        );
    }
    // `..` that stays inside is fine
    assert_eq!(
        paths(&c.resolve_sources(&["src/../a.txt".into()]).unwrap()),
        vec!["a.txt"]
    );
}

#[test]
fn symlinks_never_lead_out() {
    let d = tree();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret", "host secret");
    symlink(outside.path().join("secret"), d.path().join("abs-out")).unwrap();
    symlink("../../../../../../../../etc", d.path().join("rel-out")).unwrap();
    symlink("src", d.path().join("srclink")).unwrap();
    symlink("/src/main.rs", d.path().join("src/abs-in")).unwrap();
    let c = ctx_with(d.path(), &[]);
    // a symlink source pointing out resolves inside the root, where it does not exist
    let e = c.resolve_sources(&["abs-out".into()]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("abs-out: not found in the build context"),
        "{e}"
    );
    let e = c.resolve_sources(&["rel-out/passwd".into()]).unwrap_err();
    assert!(
        e.to_string().starts_with("rel-out/passwd: not found"),
        "{e}"
    );
    // links inside the root are followed in scope
    assert_eq!(
        paths(&c.resolve_sources(&["srclink/main.rs".into()]).unwrap()),
        vec!["src/main.rs"]
    );
    assert_eq!(
        paths(&c.resolve_sources(&["src/abs-in".into()]).unwrap()),
        vec!["src/main.rs"]
    );
    // inside a copied directory, links are entries, never followed
    symlink(outside.path(), d.path().join("src/out-dir")).unwrap();
    let r = c.resolve_sources(&["src".into()]).unwrap();
    let entries = c.walk(&r[0]).unwrap();
    let link = entries.iter().find(|e| e.path == "src/out-dir").unwrap();
    assert_eq!(
        link.kind,
        EntryKind::Symlink {
            target: outside.path().display().to_string()
        }
    );
    assert!(!entries.iter().any(|e| e.path.starts_with("src/out-dir/")));
}

#[test]
fn dockerignore_applies_to_sources_and_walks() {
    let d = tree();
    write(
        d.path(),
        ".dockerignore",
        "# build junk\ntarget\ndocs\n!docs/keep.md\n*.md\n!c.md\n",
    );
    let c = BuildContext::open(d.path(), StatCache::in_memory()).unwrap();
    let e = c.resolve_sources(&["target/big.bin".into()]).unwrap_err();
    assert_eq!(e.to_string(), "target/big.bin: excluded by .dockerignore");
    assert_eq!(
        paths(&c.resolve_sources(&["docs/*".into()]).unwrap()),
        vec!["docs/keep.md"]
    );
    let all = c.resolve_sources(&[".".into()]).unwrap();
    let entries: Vec<String> = c
        .walk(&all[0])
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(
        entries,
        vec![
            ".",
            ".dockerignore",
            "a.txt",
            "b.txt",
            "c.md",
            "docs/keep.md",
            "src",
            "src/lib.rs",
            "src/main.rs",
            "src/nested",
            "src/nested/deep.rs"
        ]
    );
}

#[test]
fn bad_dockerignore_names_file_and_line() {
    let d = tree();
    write(d.path(), ".dockerignore", "ok\n[oops\n");
    let e = BuildContext::open(d.path(), StatCache::in_memory()).unwrap_err();
    let want = format!("{}/.dockerignore: .dockerignore:2: invalid pattern \"[oops\": unterminated character class: expected ']'", std::fs::canonicalize(d.path()).unwrap().display());
    assert_eq!(e.to_string(), want);
}

#[test]
fn destination_rules() {
    let f = |p: &str, dir: bool| ResolvedSource {
        pattern: p.into(),
        path: p.into(),
        is_dir: dir,
    };
    let items = copy_items(&[f("a.txt", false)], "/app/", "/", "COPY").unwrap();
    assert_eq!(items[0].dest, "/app/a.txt");
    let items = copy_items(&[f("a.txt", false)], "/app/b.txt", "/", "COPY").unwrap();
    assert_eq!(
        (items[0].dest.as_str(), items[0].dest_may_be_dir),
        ("/app/b.txt", true)
    );
    let items = copy_items(&[f("a.txt", false)], "rel/", "/work", "COPY").unwrap();
    assert_eq!(items[0].dest, "/work/rel/a.txt");
    let items = copy_items(&[f("a.txt", false)], ".", "/work", "COPY").unwrap();
    assert_eq!(items[0].dest, "/work/a.txt");
    let items = copy_items(&[f("src", true)], "/app", "/", "COPY").unwrap();
    assert_eq!(
        (items[0].dest.as_str(), items[0].contents_only),
        ("/app", true)
    );
    let e = copy_items(&[f("a.txt", false), f("b.txt", false)], "/app", "/", "COPY").unwrap_err();
    assert_eq!(e, "when using COPY with more than one source file, the destination must be a directory and end with a /: \"/app\"");
    let items = copy_items(&[f("a.txt", false), f("b.txt", false)], "/", "/", "ADD").unwrap();
    assert_eq!(
        items.iter().map(|i| i.dest.as_str()).collect::<Vec<_>>(),
        vec!["/a.txt", "/b.txt"]
    );
}

#[test]
fn content_hash_tracks_content_mode_and_names() {
    let d = tree();
    let mut c = ctx_with(d.path(), &[]);
    let src = c.resolve_sources(&["src".into()]).unwrap();
    let (h1, _) = c.hash_sources(&src).unwrap();
    assert!(h1.files.contains_key("src/main.rs"));
    write(d.path(), "src/main.rs", "fn main() { changed }");
    let (h2, _) = c.hash_sources(&src).unwrap();
    assert_ne!(h1.digest, h2.digest);
    assert_ne!(h1.files["src/main.rs"], h2.files["src/main.rs"]);
    assert_eq!(h1.files["src/lib.rs"], h2.files["src/lib.rs"]);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        d.path().join("src/lib.rs"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let (h3, _) = c.hash_sources(&src).unwrap();
    assert_ne!(h2.digest, h3.digest);
    fs::rename(d.path().join("src/lib.rs"), d.path().join("src/lib2.rs")).unwrap();
    let (h4, _) = c.hash_sources(&src).unwrap();
    assert_ne!(h3.digest, h4.digest);
}

#[test]
fn stat_cache_avoids_rereading_and_notices_changes() {
    let d = tree();
    let big = "x".repeat(1 << 20);
    write(d.path(), "data/big1", &big);
    write(d.path(), "data/big2", &big);
    let state = tempfile::tempdir().unwrap();
    let cache_path = state.path().join("statcache.json");
    // files must be older than the racy window when the cache is written
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let mut c = BuildContext::open(d.path(), StatCache::load(&cache_path)).unwrap();
    let src = c.resolve_sources(&[".".into()]).unwrap();
    let (h1, _) = c.hash_sources(&src).unwrap();
    assert!(c.stats().bytes_hashed >= 2 << 20);
    c.save_stat_cache().unwrap();
    let leftovers: Vec<_> = fs::read_dir(state.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the cache file, no temp files: {leftovers:?}"
    );

    // a new process: nothing is re-read
    let mut c = BuildContext::open(d.path(), StatCache::load(&cache_path)).unwrap();
    let src = c.resolve_sources(&[".".into()]).unwrap();
    let (h2, _) = c.hash_sources(&src).unwrap();
    assert_eq!(h1, h2);
    assert_eq!(c.stats().bytes_hashed, 0);
    assert_eq!(c.stats().files_hashed, 0);
    assert!(c.stats().cache_hits >= 9);

    // change one file (same size): only it is re-read
    write(d.path(), "data/big2", &"y".repeat(1 << 20));
    let mut c = BuildContext::open(d.path(), StatCache::load(&cache_path)).unwrap();
    let src = c.resolve_sources(&[".".into()]).unwrap();
    let (h3, _) = c.hash_sources(&src).unwrap();
    assert_ne!(h1.digest, h3.digest);
    assert_eq!(c.stats().files_hashed, 1);
    assert_eq!(c.stats().bytes_hashed, 1 << 20);

    // a corrupt cache file is ignored, not fatal
    fs::write(&cache_path, b"not json").unwrap();
    let mut c = BuildContext::open(d.path(), StatCache::load(&cache_path)).unwrap();
    let src = c.resolve_sources(&[".".into()]).unwrap();
    let (h4, _) = c.hash_sources(&src).unwrap();
    assert_eq!(h3.digest, h4.digest);
}

#[test]
fn recently_written_files_are_rehashed_after_reload() {
    let d = tree();
    let state = tempfile::tempdir().unwrap();
    let cache_path = state.path().join("statcache.json");
    let mut c = BuildContext::open(d.path(), StatCache::load(&cache_path)).unwrap();
    let src = c.resolve_sources(&["a.txt".into()]).unwrap();
    c.hash_sources(&src).unwrap();
    c.save_stat_cache().unwrap();
    // a.txt was written moments before the cache: not trusted (racily clean)
    let mut c = BuildContext::open(d.path(), StatCache::load(&cache_path)).unwrap();
    c.hash_sources(&src).unwrap();
    assert_eq!(c.stats().files_hashed, 1);
}

/// 4000 random pattern lists and paths answered by moby/patternmatcher itself
/// (tests/data/gen_patternmatcher.go): our matcher must agree on every one.
#[test]
fn dockerignore_agrees_with_moby_patternmatcher() {
    #[derive(serde::Deserialize)]
    struct Row {
        patterns: Vec<String>,
        path: String,
        excluded: bool,
        #[serde(default)]
        error: bool,
    }
    let data = include_str!("data/patternmatcher.jsonl");
    let mut disagree = Vec::new();
    let mut lax_go = 0;
    let mut n = 0;
    for line in data.lines() {
        let row: Row = serde_json::from_str(line).unwrap();
        n += 1;
        let pats: Vec<&str> = row.patterns.iter().map(String::as_str).collect();
        match Dockerignore::from_patterns(&pats) {
            Err(_) if row.error => {}
            // Go 1.19 (which generated the table) only validates a pattern up to
            // the first chunk that fails against "."; Go >= 1.20, which docker is
            // built with, validates all of it and rejects these, as we do
            Err(e) if e.reason.starts_with("unterminated character class") => lax_go += 1,
            Err(e) => disagree.push(format!(
                "{pats:?} {}: we error ({e}), moby excluded={}",
                row.path, row.excluded
            )),
            Ok(_) if row.error => disagree.push(format!("{pats:?}: moby errors, we accept")),
            Ok(d) => {
                if d.is_excluded(&row.path) != row.excluded {
                    disagree.push(format!(
                        "{pats:?} on {:?}: moby says excluded={}",
                        row.path, row.excluded
                    ));
                }
            }
        }
    }
    assert_eq!(n, 4000);
    assert!(lax_go <= 10, "{lax_go} patterns only old Go accepts");
    assert!(
        disagree.is_empty(),
        "{} disagreements, first ones:\n{}",
        disagree.len(),
        disagree
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
