//! Real clients against gabang's registry, and gabang's client against a real registry:
//! skopeo (copy in OCI and docker formats, inspect, delete, token auth), dockerd (push, pull),
//! and CNCF Distribution (Debian `docker-registry`) as the server for gabang push/pull.

mod common;
use common::*;
use gabang_content::archive::{save_to_file, SaveFormat, SaveItem};
use gabang_content::{ImageRef, Store};
use gabang_registry::client::{self, Options};
use gabang_registry::registry::{AuthMode, Config};
use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let (good, text) = run(cmd, args);
    assert!(good, "{cmd} {args:?}: {text}");
    text
}

fn opts(dir: &Path) -> Options {
    Options {
        docker_config: Some(dir.join("docker-config.json")),
        ..Default::default()
    }
}

#[test]
fn skopeo_copies_to_and_from_gabang_registry() {
    let t = TestRegistry::start(Config::default());
    let h = t.host();
    let work = tempfile::tempdir().unwrap();
    let src = Store::open(&work.path().join("src")).unwrap();
    let img = import_busybox(&src, "local/bb:1");
    let archive = work.path().join("bb-oci.tar");
    save_to_file(
        &src,
        &[SaveItem {
            image: img.clone(),
            names: vec!["local/bb:1".into()],
        }],
        SaveFormat::Oci,
        &archive,
    )
    .unwrap();
    let arch = format!("oci-archive:{}", archive.display());
    let tls = "--dest-tls-verify=false";
    // OCI format and docker v2s2 format into gabang's registry.
    ok(
        "skopeo",
        &[
            "copy",
            "-q",
            tls,
            "--format",
            "oci",
            &arch,
            &format!("docker://{h}/sk/oci:1"),
        ],
    );
    ok(
        "skopeo",
        &[
            "copy",
            "-q",
            tls,
            "--format",
            "v2s2",
            &arch,
            &format!("docker://{h}/sk/docker:1"),
        ],
    );
    let raw = ok(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{h}/sk/docker:1"),
        ],
    );
    assert!(
        raw.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{raw}"
    );
    let raw = ok(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{h}/sk/oci:1"),
        ],
    );
    assert!(
        raw.contains("application/vnd.oci.image.manifest.v1+json"),
        "{raw}"
    );
    let info = ok(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{h}/sk/oci:1"),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    // Shared layer stored once: both repositories reference the same blob.
    let layer = img.layer_digests().unwrap()[0].clone();
    assert!(t.store.blobs().exists(&layer));
    // Back out of gabang's registry: to an OCI layout and a docker archive.
    let layout = work.path().join("layout");
    ok(
        "skopeo",
        &[
            "copy",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{h}/sk/oci:1"),
            &format!("oci:{}:x", layout.display()),
        ],
    );
    assert!(layout.join("index.json").is_file());
    let da = work.path().join("out-docker.tar");
    ok(
        "skopeo",
        &[
            "copy",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{h}/sk/docker:1"),
            &format!("docker-archive:{}:sk/docker:1", da.display()),
        ],
    );
    assert!(std::fs::metadata(&da).unwrap().len() > 100_000);
    // Registry-to-registry (mount / reuse path) and gabang's client pulls what skopeo pushed.
    ok(
        "skopeo",
        &[
            "copy",
            "-q",
            "--src-tls-verify=false",
            tls,
            &format!("docker://{h}/sk/oci:1"),
            &format!("docker://{h}/sk/copy:2"),
        ],
    );
    let dst = Store::open(&work.path().join("dst")).unwrap();
    for r in ["sk/oci:1", "sk/docker:1", "sk/copy:2"] {
        let (pulled, _) = client::pull(
            &dst,
            &ImageRef::parse(&format!("{h}/{r}")).unwrap(),
            &opts(work.path()),
        )
        .unwrap();
        assert_eq!(pulled.config_digest, img.config_digest, "{r}");
    }
    // Delete.
    ok(
        "skopeo",
        &[
            "delete",
            "--tls-verify=false",
            &format!("docker://{h}/sk/docker:1"),
        ],
    );
    let (found, _) = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{h}/sk/docker:1"),
        ],
    );
    assert!(!found);
    let tags = ok(
        "skopeo",
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{h}/sk/copy"),
        ],
    );
    assert!(tags.contains("\"2\""), "{tags}");
}

#[test]
fn skopeo_with_token_auth() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let ht = gabang_registry::auth::Htpasswd::parse(&format!("bob:{hash}")).unwrap();
    let t = TestRegistry::start(Config {
        auth: AuthMode::Token(std::sync::Arc::new(ht)),
        ..Default::default()
    });
    let h = t.host();
    let work = tempfile::tempdir().unwrap();
    let src = Store::open(&work.path().join("src")).unwrap();
    let img = make_image(&src, "local/t:1", &[tar_with("a", b"token auth")]);
    let archive = work.path().join("a.tar");
    save_to_file(
        &src,
        &[SaveItem {
            image: img,
            names: vec!["local/t:1".into()],
        }],
        SaveFormat::Oci,
        &archive,
    )
    .unwrap();
    let arch = format!("oci-archive:{}", archive.display());
    let dest = format!("docker://{h}/auth/t:1");
    let (good, text) = run(
        "skopeo",
        &["copy", "-q", "--dest-tls-verify=false", &arch, &dest],
    );
    assert!(!good, "push without credentials must fail: {text}");
    ok(
        "skopeo",
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "--dest-creds",
            "bob:pw",
            &arch,
            &dest,
        ],
    );
    ok(
        "skopeo",
        &["inspect", "--tls-verify=false", "--creds", "bob:pw", &dest],
    );
}

/// Removes the test's images from the docker engine even when the test fails.
struct DockerImages(Vec<String>);
impl Drop for DockerImages {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

#[test]
fn dockerd_pushes_to_and_pulls_from_gabang_registry() {
    let (up, text) = run("docker", &["info"]);
    assert!(up, "no docker engine (scripts/start-dockerd.sh): {text}");
    let t = TestRegistry::start(Config::default());
    let h = t.host();
    let uniq = format!("{:x}", rand_u64());
    let local = format!("gabang-reg-test-{uniq}:1");
    let remote = format!("{h}/dk/bb-{uniq}:1");
    let _guard = DockerImages(vec![local.clone(), remote.clone()]);
    ok(
        "docker",
        &["import", busybox_tar().to_str().unwrap(), &local],
    );
    ok("docker", &["tag", &local, &remote]);
    let out = ok("docker", &["push", &remote]);
    assert!(out.contains("digest: sha256:"), "{out}");
    // gabang's client reads what docker pushed (docker v2s2).
    let work = tempfile::tempdir().unwrap();
    let dst = Store::open(&work.path().join("dst")).unwrap();
    let (img, _) =
        client::pull(&dst, &ImageRef::parse(&remote).unwrap(), &opts(work.path())).unwrap();
    assert_eq!(
        img.manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    // docker pulls it back after removing its copies.
    ok("docker", &["rmi", "-f", &local, &remote]);
    let out = ok("docker", &["pull", &remote]);
    assert!(
        out.contains("Downloaded newer image")
            || out.contains("Pull complete")
            || out.contains("Status"),
        "{out}"
    );
    let id = ok("docker", &["image", "inspect", "-f", "{{.Id}}", &remote]);
    assert_eq!(id.trim(), img.config_digest.to_string());
    // And docker pulls an image gabang's client pushed (OCI manifest).
    let src = Store::open(&work.path().join("src")).unwrap();
    let g = make_image(&src, "local/g:1", &[tar_with("hello", b"from gabang")]);
    let gref = format!("{h}/dk/from-gabang-{uniq}:1");
    let _guard2 = DockerImages(vec![gref.clone()]);
    client::push(
        &src,
        "local/g:1",
        &ImageRef::parse(&gref).unwrap(),
        &opts(work.path()),
    )
    .unwrap();
    ok("docker", &["pull", &gref]);
    let id = ok("docker", &["image", "inspect", "-f", "{{.Id}}", &gref]);
    assert_eq!(id.trim(), g.config_digest.to_string());
}

fn rand_u64() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ (std::process::id() as u64) << 32
}

#[test]
fn gabang_client_pushes_to_and_pulls_from_cncf_distribution() {
    let d = Distribution::start();
    let work = tempfile::tempdir().unwrap();
    let src = Store::open(&work.path().join("src")).unwrap();
    let bb = import_busybox(&src, "local/bb:1");
    let big = make_image(
        &src,
        "local/big:1",
        &[tar_with("a", &noise(5, 3 << 20)), tar_with("b", b"small")],
    );
    let o = opts(work.path());
    let r1 = client::push(
        &src,
        "local/bb:1",
        &ImageRef::parse(&format!("{}/lib/bb:1", d.host)).unwrap(),
        &o,
    )
    .unwrap();
    assert_eq!(r1.uploaded, 2);
    // The chunked, resumable upload path (chunks of 1 MiB) against a real registry.
    let chunked = Options {
        chunked_threshold: 1 << 20,
        chunk_size: 1 << 20,
        ..o.clone()
    };
    let r2 = client::push(
        &src,
        "local/big:1",
        &ImageRef::parse(&format!("{}/lib/big:1", d.host)).unwrap(),
        &chunked,
    )
    .unwrap();
    assert_eq!(r2.manifest_digest, big.manifest_digest.to_string());
    // Pushing again skips every blob.
    let again = client::push(
        &src,
        "local/bb:1",
        &ImageRef::parse(&format!("{}/lib/bb:1", d.host)).unwrap(),
        &o,
    )
    .unwrap();
    assert_eq!((again.uploaded, again.skipped), (0, 2));
    // skopeo agrees on what is there.
    let raw = ok(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{}/lib/big:1", d.host),
        ],
    );
    assert_eq!(sha(raw.trim_end().as_bytes()).to_string().len(), 71);
    // Pull both into a fresh store; same image IDs; a tag that is not there is a clear error.
    let dst = Store::open(&work.path().join("dst")).unwrap();
    for (r, img) in [("lib/bb:1", &bb), ("lib/big:1", &big)] {
        let (p, rep) = client::pull(
            &dst,
            &ImageRef::parse(&format!("{}/{r}", d.host)).unwrap(),
            &o,
        )
        .unwrap();
        assert_eq!(p.config_digest, img.config_digest);
        assert_eq!(rep.manifest_digest, img.manifest_digest.to_string());
        assert!(dst.resolve_image(&format!("{}/{r}", d.host)).is_ok());
    }
    let err = client::pull(
        &dst,
        &ImageRef::parse(&format!("{}/lib/none:1", d.host)).unwrap(),
        &o,
    )
    .unwrap_err();
    assert!(
        matches!(err, gabang_registry::Error::NotFound { .. }),
        "{err}"
    );
    // A closed port is a network error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client::pull(
        &dst,
        &ImageRef::parse(&format!("127.0.0.1:{port}/x:1")).unwrap(),
        &o,
    )
    .unwrap_err();
    assert!(
        matches!(err, gabang_registry::Error::Network { .. }),
        "{err}"
    );
}

#[test]
fn gabang_client_and_server_share_layers_once() {
    let t = TestRegistry::start(Config::default());
    let work = tempfile::tempdir().unwrap();
    let src = Store::open(&work.path().join("src")).unwrap();
    let base = import_busybox(&src, "local/a:1");
    let o = opts(work.path());
    client::push(
        &src,
        "local/a:1",
        &ImageRef::parse(&format!("{}/one/a:1", t.host())).unwrap(),
        &o,
    )
    .unwrap();
    // Same layers into another repository: mounted, not uploaded.
    let r = client::push(
        &src,
        "local/a:1",
        &ImageRef::parse(&format!("{}/two/a:1", t.host())).unwrap(),
        &o,
    )
    .unwrap();
    assert_eq!((r.uploaded, r.mounted), (0, 2));
    // Pulling into the server's own store finds every blob present (one content store).
    let (img, rep) = client::pull(
        &t.store,
        &ImageRef::parse(&format!("{}/two/a:1", t.host())).unwrap(),
        &o,
    )
    .unwrap();
    assert_eq!(img.config_digest, base.config_digest);
    assert_eq!(rep.downloaded, 0);
    // The local image GC keeps blobs the registry references.
    t.store
        .remove_image(&format!("{}/two/a:1", t.host()), true)
        .unwrap();
    t.store.gc().unwrap();
    for l in base.layer_digests().unwrap() {
        assert!(t.store.blobs().exists(&l));
    }
}
