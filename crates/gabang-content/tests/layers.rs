//! Layers against the real kernel: whiteouts applied in order and honoured by overlayfs,
//! directory → layer → directory round trips, and the store's dedupe/GC/usage rules.

mod common;
use common::{tree, Kind, RawTar};
use gabang_content::digest::chain_ids;
use gabang_content::layer::apply::{apply_layer, ApplyOptions};
use gabang_content::layer::diff::{tar_dir, write_layer};
use gabang_content::layer::Compression;
use gabang_content::store::NewLayer;
use gabang_content::{Error, ImageRef, Store};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An overlay mount that is always unmounted.
struct Mount(PathBuf);
impl Mount {
    fn overlay(lowers_bottom_up: &[PathBuf], target: &Path) -> Mount {
        let lower: Vec<String> = lowers_bottom_up
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let data = format!("lowerdir={}", lower.join(":"));
        fs::create_dir_all(target).unwrap();
        let cdata = std::ffi::CString::new(data.clone()).unwrap();
        rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            rustix::mount::MountFlags::RDONLY,
            Some(cdata.as_c_str()),
        )
        .unwrap_or_else(|e| panic!("mount overlay {data}: {e}"));
        Mount(target.to_path_buf())
    }
}
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

fn layer1() -> Vec<u8> {
    RawTar::new()
        .entry("a/", Kind::Dir, 0o755)
        .entry("a/b", Kind::File(b"b1"), 0o644)
        .entry("a/c", Kind::File(b"c1"), 0o644)
        .entry("d", Kind::File(b"d1"), 0o644)
        .entry("e/", Kind::Dir, 0o755)
        .entry("e/old", Kind::File(b"old"), 0o644)
        .entry("f/", Kind::Dir, 0o755)
        .entry("f/keep", Kind::File(b"k"), 0o644)
        .entry("suid", Kind::File(b"s"), 0o4755)
        .finish()
}

fn layer2() -> Vec<u8> {
    RawTar::new()
        .entry("a/.wh.b", Kind::File(b""), 0o644)
        .entry(".wh.d", Kind::File(b""), 0o644)
        .entry("e/", Kind::Dir, 0o755)
        .entry("e/.wh..wh..opq", Kind::File(b""), 0o644)
        .entry("e/new", Kind::File(b"new"), 0o644)
        // deleted then re-created in the same layer: order wins
        .entry("f/.wh.keep", Kind::File(b""), 0o644)
        .entry("f/keep", Kind::File(b"k2"), 0o644)
        .finish()
}

#[test]
fn whiteouts_are_applied_in_order_and_honoured_by_overlayfs() {
    let tmp = tempfile::tempdir().unwrap();
    let (l1, l2) = (tmp.path().join("l1"), tmp.path().join("l2"));
    fs::create_dir_all(&l1).unwrap();
    fs::create_dir_all(&l2).unwrap();
    apply_layer(
        std::io::Cursor::new(layer1()),
        &l1,
        &ApplyOptions::default(),
    )
    .unwrap();
    apply_layer(
        std::io::Cursor::new(layer2()),
        &l2,
        &ApplyOptions::default(),
    )
    .unwrap();
    // overlay format on disk
    let wb = fs::symlink_metadata(l2.join("a/b")).unwrap();
    assert!(wb.file_type().is_char_device() && wb.rdev() == 0);
    let mut v = [0u8; 2];
    assert_eq!(
        rustix::fs::getxattr(l2.join("e"), "trusted.overlay.opaque", &mut v[..]).unwrap(),
        1
    );
    assert_eq!(
        fs::symlink_metadata(l1.join("suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
    // the merged view
    let m = Mount::overlay(&[l1.clone(), l2.clone()], &tmp.path().join("merged"));
    // a/b and d whited out, e opaque (old hidden), f/keep deleted then re-created.
    let want = [
        "d a", "d e", "d f", "f a/c", "f e/new", "f f/keep", "f suid",
    ];
    assert_eq!(tree(&m.0), want.map(String::from).to_vec());
    assert_eq!(fs::read(m.0.join("f/keep")).unwrap(), b"k2");
}

#[test]
fn directory_to_layer_round_trip_keeps_whiteouts_links_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    apply_layer(
        std::io::Cursor::new(layer2()),
        &src,
        &ApplyOptions::default(),
    )
    .unwrap();
    fs::write(src.join("file"), b"content").unwrap();
    fs::set_permissions(src.join("file"), fs::Permissions::from_mode(0o2711)).unwrap();
    fs::hard_link(src.join("file"), src.join("hard")).unwrap();
    std::os::unix::fs::symlink("/nowhere", src.join("sym")).unwrap();
    let tarbytes = tar_dir(&src, Vec::new()).unwrap();
    // OCI whiteouts in the tar
    let names: Vec<String> = tar::Archive::new(&tarbytes[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    for n in ["a/.wh.b", ".wh.d", "e/.wh..wh..opq", "hard"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    // deterministic
    assert_eq!(tar_dir(&src, Vec::new()).unwrap(), tarbytes);
    let dst = tmp.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    apply_layer(
        std::io::Cursor::new(tarbytes),
        &dst,
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(tree(&src), tree(&dst));
    assert_eq!(
        fs::metadata(dst.join("hard")).unwrap().ino(),
        fs::metadata(dst.join("file")).unwrap().ino()
    );
    assert_eq!(
        fs::metadata(dst.join("file")).unwrap().permissions().mode() & 0o7777,
        0o2711
    );
    assert_eq!(
        fs::read_link(dst.join("sym")).unwrap(),
        Path::new("/nowhere")
    );
    assert!(fs::symlink_metadata(dst.join("a/b"))
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn every_compression_applies_and_gives_the_same_diff_id() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("x")).unwrap();
    fs::write(src.join("x/data"), vec![42u8; 100_000]).unwrap();
    let mut ids = Vec::new();
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let l = write_layer(store.blobs(), &src, c).unwrap();
        let dst = tmp.path().join(format!("{c:?}"));
        fs::create_dir_all(&dst).unwrap();
        let rep = apply_layer(
            store.blobs().open_blob(&l.digest).unwrap(),
            &dst,
            &ApplyOptions::default(),
        )
        .unwrap();
        assert_eq!(rep.compression, c);
        assert_eq!(rep.diff_id, l.diff_id);
        assert_eq!(fs::read(dst.join("x/data")).unwrap(), vec![42u8; 100_000]);
        ids.push(l.diff_id);
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
}

fn import_dir(store: &Store, dir: &Path, tag: &str) -> gabang_content::Image {
    gabang_content::import::import(
        store,
        dir,
        Some(&ImageRef::parse(tag).unwrap()),
        &Default::default(),
        &|_| {},
    )
    .unwrap()
}

#[test]
fn importing_the_same_rootfs_twice_stores_its_bytes_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let src = tmp.path().join("rootfs");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::write(
        src.join("bin/big"),
        (0..2_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let a = import_dir(&store, &src, "one:1");
    let before = store.blobs().total_size().unwrap();
    let b = import_dir(&store, &src, "two:1");
    let after = store.blobs().total_size().unwrap();
    assert_eq!(a.layer_digests().unwrap(), b.layer_digests().unwrap());
    // Only a new config + manifest (< 2 KiB) were added; the layer is shared.
    assert!(after - before < 2048, "grew by {}", after - before);
    assert_eq!(store.snapshots().list().unwrap().len(), 1);
    // Same tarball imported twice too.
    let t = tmp.path().join("r.tar");
    fs::write(&t, tar_dir(&src, Vec::new()).unwrap()).unwrap();
    let c = gabang_content::import::import(&store, &t, None, &Default::default(), &|_| {}).unwrap();
    let d = gabang_content::import::import(&store, &t, None, &Default::default(), &|_| {}).unwrap();
    assert_eq!(c.layer_digests().unwrap(), d.layer_digests().unwrap());
}

#[test]
fn images_in_use_are_kept_and_gc_frees_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let src = tmp.path().join("rootfs");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"1").unwrap();
    let img = import_dir(&store, &src, "app:1");
    store.tag("app:1", "app:2").unwrap();
    store.add_usage(&img.id, "container:abc").unwrap();
    // Removing one of two tags just untags.
    assert_eq!(
        store.remove_image("app:2", false).unwrap(),
        vec!["Untagged: app:2"]
    );
    let e = store.remove_image("app:1", false).unwrap_err();
    assert!(matches!(e, Error::ImageInUse { .. }), "{e}");
    assert!(store.gc().unwrap().blobs_removed == 0);
    store.remove_usage(&img.id, "container:abc").unwrap();
    let out = store.remove_image(&img.short_id()[..6], false).unwrap();
    assert!(
        out.last().unwrap().starts_with("Deleted: sha256:"),
        "{out:?}"
    );
    let r = store.gc().unwrap();
    assert_eq!(r.blobs_removed, 3, "layer, config, manifest");
    assert_eq!(r.snapshots_removed, 1);
    assert!(store.blobs().list().unwrap().is_empty());
    assert!(matches!(
        store.resolve_image("app:1"),
        Err(Error::ImageNotFound(_))
    ));
}

#[test]
fn a_live_lease_protects_fresh_blobs_from_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let lease = store.lease().unwrap();
    let d = store.blobs().put(b"in-flight layer").unwrap();
    assert_eq!(store.gc().unwrap().blobs_removed, 0);
    assert!(store.blobs().exists(&d));
    drop(lease);
    // GC also spares blobs touched after it starts; let this one be strictly older.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(store.gc().unwrap().blobs_removed, 1);
}

#[test]
fn create_image_checks_diff_ids_and_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let l = write_layer(store.blobs(), &src, Compression::Gzip).unwrap();
    let wrong = gabang_content::Digest::sha256_of(b"nope");
    let cfg = serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[wrong.to_string()]}});
    let e = store
        .create_image_raw(
            &serde_json::to_vec(&cfg).unwrap(),
            &[NewLayer::from(&l)],
            &[],
        )
        .unwrap_err();
    assert!(e.to_string().contains("diff id"), "{e}");
    // A layer whose content does not match the diff id it claims is refused at unpack.
    let liar = NewLayer {
        diff_id: wrong.clone(),
        ..NewLayer::from(&l)
    };
    let e = store
        .create_image_raw(&serde_json::to_vec(&cfg).unwrap(), &[liar], &[])
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(store.list_images().unwrap().is_empty());
    assert_eq!(chain_ids(std::slice::from_ref(&l.diff_id))[0], l.diff_id);
}

#[test]
fn concurrent_unpacks_of_one_image_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s");
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..200 {
        fs::write(src.join(format!("f{i}")), vec![i as u8; 10_000]).unwrap();
    }
    let store = Store::open(&root).unwrap();
    let img = import_dir(&store, &src, "c:1");
    store
        .snapshots()
        .remove(&img.chain_ids().unwrap()[0])
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let st = Store::open(&root).unwrap();
                let i = st.resolve_image("c:1").unwrap();
                let dirs = st.snapshot_dirs(&i).unwrap();
                assert_eq!(fs::read_dir(&dirs[0]).unwrap().count(), 200);
            });
        }
    });
    let names: Vec<_> = fs::read_dir(root.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "staging left behind: {names:?}");
}

#[test]
fn docker_schema2_manifests_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("hello"), b"docker").unwrap();
    let l = write_layer(store.blobs(), &src, Compression::Gzip).unwrap();
    let cfg = serde_json::json!({"architecture":"amd64","os":"linux","config":{"Cmd":["/hello"]},
        "rootfs":{"type":"layers","diff_ids":[l.diff_id.to_string()]}});
    let cfg_bytes = serde_json::to_vec(&cfg).unwrap();
    let cd = store.blobs().put(&cfg_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": cfg_bytes.len(), "digest": cd.to_string()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": l.size, "digest": l.digest.to_string()}]
    });
    let img = store
        .add_manifest(
            &serde_json::to_vec(&manifest).unwrap(),
            gabang_content::store::DOCKER_MANIFEST,
            &[ImageRef::parse("docker/style:1").unwrap()],
        )
        .unwrap();
    assert_eq!(
        img.manifest_media_type,
        gabang_content::store::DOCKER_MANIFEST
    );
    assert_eq!(
        store.resolve_image("docker/style:1").unwrap().id,
        cd.to_string()
    );
    let dirs = store.snapshot_dirs(&img).unwrap();
    assert_eq!(fs::read(dirs[0].join("hello")).unwrap(), b"docker");
}

#[test]
fn blobs_referenced_by_other_owners_survive_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let kept = store.blobs().put(b"a registry layer").unwrap();
    let lost = store.blobs().put(b"garbage").unwrap();
    store
        .add_blob_refs("registry:app", std::slice::from_ref(&kept))
        .unwrap();
    // GC spares blobs touched after it starts; let these be strictly older.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(store.gc().unwrap().blobs_removed, 1);
    assert!(store.blobs().exists(&kept) && !store.blobs().exists(&lost));
    store.remove_blob_refs("registry:app", None).unwrap();
    assert_eq!(store.gc().unwrap().blobs_removed, 1);
}

#[test]
fn rmi_force_of_an_image_in_use_keeps_its_snapshots_until_released() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s")).unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"running").unwrap();
    let img = import_dir(&store, &src, "busy:1");
    store.add_usage(&img.id, "container:c1").unwrap();
    store.remove_image("busy:1", true).unwrap();
    store.gc().unwrap();
    let dirs: Vec<PathBuf> = img
        .chain_ids()
        .unwrap()
        .iter()
        .map(|c| store.snapshots().fs_path(c))
        .collect();
    assert_eq!(fs::read(dirs[0].join("f")).unwrap(), b"running");
    store.remove_usage(&img.id, "container:c1").unwrap();
    // gc keeps blobs written in the last few ms (an operation may be about to record them).
    std::thread::sleep(std::time::Duration::from_millis(50));
    let r = store.gc().unwrap();
    assert_eq!(r.snapshots_removed, 1);
    assert!(store.blobs().list().unwrap().is_empty());
}

#[test]
fn a_connection_that_is_never_closed_keeps_the_wal_short() {
    // A node agent (or a CLI command that exits without dropping the shared store) writes
    // for as long as it runs; every new process then recovers the whole WAL when it opens
    // the database, so the WAL must not grow with the number of writes.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s");
    let store = Store::shared(&root).unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &store,
        &Store::shared(&root).unwrap()
    ));
    for i in 0..2000 {
        store
            .add_usage("sha256:0000", &format!("container:{i:060}"))
            .unwrap();
        store
            .remove_usage("sha256:0000", &format!("container:{i:060}"))
            .unwrap();
    }
    let wal = fs::metadata(root.join("metadata.db-wal")).unwrap().len();
    assert!(wal <= 512 * 1024, "WAL is {wal} bytes after 4000 commits");
}
