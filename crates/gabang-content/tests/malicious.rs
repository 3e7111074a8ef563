//! A malicious-tar corpus against layer apply, import and load: every case is rejected
//! naming the entry, or contained inside the root. Nothing outside the root is touched.

mod common;
use common::{gzip, tree, Kind, RawTar};
use gabang_content::layer::apply::{apply_layer, ApplyOptions};
use gabang_content::{Error, Store};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("sentinel"), b"precious").unwrap();
        Sandbox {
            _tmp: tmp,
            root,
            outside,
        }
    }
    fn out(&self) -> String {
        self.outside
            .display()
            .to_string()
            .trim_start_matches('/')
            .to_string()
    }
    fn assert_outside_untouched(&self, case: &str) {
        assert_eq!(
            tree(&self.outside),
            vec!["f sentinel".to_string()],
            "{case}: outside changed"
        );
        let md = fs::metadata(self.outside.join("sentinel")).unwrap();
        assert_eq!(
            fs::read(self.outside.join("sentinel")).unwrap(),
            b"precious",
            "{case}"
        );
        assert_eq!(md.nlink(), 1, "{case}: sentinel got a hardlink");
        assert_eq!(md.mode() & 0o7777, 0o644, "{case}: sentinel mode changed");
        let dmd = fs::metadata(&self.outside).unwrap();
        assert_eq!(
            dmd.mode() & 0o7777,
            0o755,
            "{case}: outside dir mode changed"
        );
        let mut buf = [0u8; 8];
        assert!(
            rustix::fs::getxattr(&self.outside, "trusted.overlay.opaque", &mut buf[..]).is_err(),
            "{case}: outside marked opaque"
        );
        // Nothing appeared beside root and outside.
        let parent = self.root.parent().unwrap();
        let mut names: Vec<_> = fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec!["outside", "root"],
            "{case}: new files beside the root"
        );
    }
}

fn apply(sb: &Sandbox, tar: Vec<u8>) -> Result<gabang_content::layer::apply::ApplyReport, Error> {
    apply_layer(
        std::io::Cursor::new(tar),
        &sb.root,
        &ApplyOptions::default(),
    )
}

fn expect_unsafe(
    case: &str,
    r: Result<gabang_content::layer::apply::ApplyReport, Error>,
    entry: &str,
) {
    match r {
        Err(Error::UnsafeEntry { entry: e, .. }) => assert!(
            e.contains(entry),
            "{case}: error names {e:?}, expected {entry:?}"
        ),
        Err(other) => {
            panic!("{case}: expected an unsafe-entry error naming {entry:?}, got {other}")
        }
        Ok(_) => panic!("{case}: accepted"),
    }
}

#[test]
fn dotdot_paths_are_rejected_by_name() {
    for name in [
        "../outside/pwned",
        "a/../../outside/pwned",
        "./../pwned",
        "a/b/../../../x",
    ] {
        let sb = Sandbox::new();
        let r = apply(
            &sb,
            RawTar::new()
                .entry(name, Kind::File(b"evil"), 0o644)
                .finish(),
        );
        expect_unsafe(name, r, name);
        sb.assert_outside_untouched(name);
    }
}

#[test]
fn absolute_paths_are_contained() {
    let sb = Sandbox::new();
    let name = format!("{}/pwned", sb.outside.display());
    apply(
        &sb,
        RawTar::new()
            .entry(&name, Kind::File(b"evil"), 0o644)
            .finish(),
    )
    .unwrap();
    assert_eq!(
        fs::read(sb.root.join(sb.out()).join("pwned")).unwrap(),
        b"evil"
    );
    sb.assert_outside_untouched("absolute");
}

#[test]
fn writes_through_symlinks_stay_inside() {
    let sb = Sandbox::new();
    let abs = sb.outside.display().to_string();
    let cases: Vec<(String, Vec<u8>)> = vec![
        (
            "abs symlink dir".into(),
            RawTar::new()
                .entry("ln", Kind::Symlink(&abs), 0o777)
                .entry("ln/pwned", Kind::File(b"x"), 0o644)
                .finish(),
        ),
        (
            "relative symlink dir".into(),
            RawTar::new()
                .entry("ln", Kind::Symlink("../../outside"), 0o777)
                .entry("ln/pwned", Kind::File(b"x"), 0o644)
                .finish(),
        ),
        (
            "symlink chain".into(),
            RawTar::new()
                .entry("b", Kind::Symlink(&abs), 0o777)
                .entry("a", Kind::Symlink("b"), 0o777)
                .entry("a/pwned", Kind::File(b"x"), 0o644)
                .finish(),
        ),
        (
            "symlink to file then overwrite".into(),
            RawTar::new()
                .entry("ln", Kind::Symlink(&format!("{abs}/sentinel")), 0o777)
                .entry("ln", Kind::File(b"x"), 0o644)
                .finish(),
        ),
        (
            "chmod through symlinked parent".into(),
            RawTar::new()
                .entry("ln", Kind::Symlink(&abs), 0o777)
                .entry("ln/", Kind::Dir, 0o777)
                .entry("ln/sub/", Kind::Dir, 0o777)
                .finish(),
        ),
        (
            "dir over symlink".into(),
            RawTar::new()
                .entry("ln", Kind::Symlink("../../outside"), 0o777)
                .entry("ln/sentinel", Kind::File(b"x"), 0o600)
                .finish(),
        ),
        (
            "whiteout through symlink".into(),
            RawTar::new()
                .entry("ln", Kind::Symlink(&abs), 0o777)
                .entry("ln/.wh.sentinel", Kind::File(b""), 0o644)
                .finish(),
        ),
        (
            "opaque through symlink".into(),
            RawTar::new()
                .entry("ln", Kind::Symlink("../../outside"), 0o777)
                .entry("ln/.wh..wh..opq", Kind::File(b""), 0o644)
                .finish(),
        ),
        (
            "fifo through symlink".into(),
            RawTar::new()
                .entry("ln", Kind::Symlink(&abs), 0o777)
                .entry("ln/fifo", Kind::Fifo, 0o644)
                .finish(),
        ),
        (
            "hardlink through symlink".into(),
            RawTar::new()
                .entry("ln", Kind::Symlink(&abs), 0o777)
                .entry("hl", Kind::Hardlink("ln/sentinel"), 0o644)
                .finish(),
        ),
    ];
    for (case, tar) in cases {
        let sb = Sandbox::new();
        // Either refused or contained; never outside.
        let _ = apply(&sb, tar);
        sb.assert_outside_untouched(&case);
    }
    sb.assert_outside_untouched("setup");
}

#[test]
fn hardlinks_to_outside_are_rejected() {
    let sb = Sandbox::new();
    let abs = format!("{}/sentinel", sb.outside.display());
    for (case, target) in [
        ("absolute", abs.as_str()),
        ("dotdot", "../outside/sentinel"),
        ("deep dotdot", "a/../../../outside/sentinel"),
    ] {
        let sb = Sandbox::new();
        let r = apply(
            &sb,
            RawTar::new()
                .entry("hl", Kind::Hardlink(target), 0o644)
                .finish(),
        );
        expect_unsafe(case, r, "hl");
        sb.assert_outside_untouched(case);
    }
    // A legitimate hardlink inside works.
    apply(
        &sb,
        RawTar::new()
            .entry("a", Kind::File(b"same"), 0o644)
            .entry("b", Kind::Hardlink("a"), 0o644)
            .finish(),
    )
    .unwrap();
    assert_eq!(
        fs::metadata(sb.root.join("b")).unwrap().ino(),
        fs::metadata(sb.root.join("a")).unwrap().ino()
    );
}

#[test]
fn device_nodes_are_never_created() {
    let sb = Sandbox::new();
    let rep = apply(
        &sb,
        RawTar::new()
            .entry("dev/", Kind::Dir, 0o755)
            .entry("dev/sda", Kind::Block(8, 0), 0o666)
            .entry("dev/mem", Kind::Char(1, 1), 0o666)
            .finish(),
    )
    .unwrap();
    assert_eq!(rep.skipped.len(), 2, "{:?}", rep.skipped);
    assert!(rep.skipped[0].contains("dev/sda"));
    assert!(!sb.root.join("dev/sda").exists() && !sb.root.join("dev/mem").exists());
}

#[test]
fn bad_whiteouts_are_rejected() {
    for name in [".wh.", "a/.wh.", ".wh..", "a/.wh..."] {
        let sb = Sandbox::new();
        fs::create_dir_all(sb.root.join("a")).unwrap();
        let r = apply(
            &sb,
            RawTar::new().entry(name, Kind::File(b""), 0o644).finish(),
        );
        expect_unsafe(name, r, name);
        sb.assert_outside_untouched(name);
        assert!(
            sb.root.exists() && sb.root.join("a").exists(),
            "{name}: removed the root or a parent"
        );
    }
}

#[test]
fn untrusted_xattrs_are_dropped() {
    let sb = Sandbox::new();
    apply(
        &sb,
        RawTar::new()
            .entry_with(
                "f",
                Kind::File(b"x"),
                0o644,
                &[
                    ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
                    ("SCHILY.xattr.user.ok", b"1"),
                ],
            )
            .finish(),
    )
    .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        rustix::fs::getxattr(sb.root.join("f"), "trusted.overlay.redirect", &mut buf[..]).is_err()
    );
    assert_eq!(
        rustix::fs::getxattr(sb.root.join("f"), "user.ok", &mut buf[..]).ok(),
        Some(1)
    );
}

#[test]
fn decompression_bombs_are_stopped() {
    let zeros = vec![0u8; 64 << 20];
    let tar = RawTar::new()
        .entry("zeros", Kind::File(&zeros), 0o644)
        .finish();
    let gz = gzip(&tar);
    let sb = Sandbox::new();
    let opts = ApplyOptions {
        max_ratio: 50,
        ratio_floor: 1 << 20,
        ..ApplyOptions::default()
    };
    let r = apply_layer(std::io::Cursor::new(gz.clone()), &sb.root, &opts);
    assert!(
        matches!(r, Err(Error::LayerLimit(ref m)) if m.contains("bomb")),
        "{r:?}"
    );
    let opts = ApplyOptions {
        max_bytes: 8 << 20,
        ..ApplyOptions::default()
    };
    let r = apply_layer(std::io::Cursor::new(gz), &sb.root, &opts);
    assert!(
        matches!(r, Err(Error::LayerLimit(ref m)) if m.contains("limit")),
        "{r:?}"
    );
    sb.assert_outside_untouched("bomb");
}

#[test]
fn parent_that_is_a_file_is_an_error_not_a_panic() {
    let sb = Sandbox::new();
    let r = apply(
        &sb,
        RawTar::new()
            .entry("f", Kind::File(b"x"), 0o644)
            .entry("f/g", Kind::File(b"y"), 0o644)
            .finish(),
    );
    expect_unsafe("file parent", r, "f/g");
}

#[test]
fn truncated_and_garbage_tars_error_cleanly() {
    let good = RawTar::new()
        .entry("a", Kind::File(&[7u8; 3000]), 0o644)
        .finish();
    for cut in [10, 511, 512, 700, 1500, 3000] {
        let sb = Sandbox::new();
        let _ = apply(&sb, good[..cut].to_vec());
        sb.assert_outside_untouched("truncated");
    }
    let sb = Sandbox::new();
    let mut junk = vec![0x1fu8, 0x8b];
    junk.extend((0..5000u32).map(|i| (i * 31 % 256) as u8));
    assert!(apply(&sb, junk).is_err());
}

fn store_is_empty(root: &Path) {
    let s = Store::open(root).unwrap();
    assert!(s.list_images().unwrap().is_empty());
    assert!(
        s.blobs().list().unwrap().is_empty(),
        "blobs left: {:?}",
        s.blobs().list().unwrap()
    );
    assert!(s.snapshots().list().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(root.join("snapshots")).unwrap().count(),
        0,
        "staging left behind"
    );
    assert_eq!(
        fs::read_dir(root.join("content/ingest")).unwrap().count(),
        0
    );
}

#[test]
fn import_and_load_of_malicious_tars_store_nothing() {
    let sb = Sandbox::new();
    let store_root = sb.root.parent().unwrap().join("store");
    let evil = RawTar::new()
        .entry("ok", Kind::File(b"fine"), 0o644)
        .entry("../outside/pwned", Kind::File(b"x"), 0o644)
        .finish();
    let tarp = sb.root.parent().unwrap().join("evil.tar");
    fs::write(&tarp, &evil).unwrap();
    {
        let store = Store::open(&store_root).unwrap();
        let tag = gabang_content::ImageRef::parse("evil:1").unwrap();
        let e =
            gabang_content::import::import(&store, &tarp, Some(&tag), &Default::default(), &|_| {})
                .unwrap_err();
        assert!(e.to_string().contains("../outside/pwned"), "{e}");
    }
    store_is_empty(&store_root);
    // The same entry inside an archive given to load.
    {
        let store = Store::open(&store_root).unwrap();
        let e = gabang_content::archive::load(&store, fs::File::open(&tarp).unwrap(), "evil.tar")
            .err()
            .unwrap();
        assert!(e.to_string().contains("pwned"), "{e}");
    }
    fs::remove_file(&tarp).unwrap();
    store_is_empty(&store_root);
    fs::remove_dir_all(&store_root).unwrap();
    sb.assert_outside_untouched("import/load");
}
