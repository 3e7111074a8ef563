//! The registry's HTTP API against the spec, driven with a plain HTTP client: uploads
//! (monolithic, chunked, resumable, out-of-order), mounts, ranges, manifests and their
//! rejections, tags and catalog paging, referrers, auth (basic, token), TLS, and online GC
//! under concurrent pushes.

mod common;
use common::*;
use gabang_registry::registry::{AuthMode, Clock, Config};
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn http() -> Client {
    Client::builder().build().unwrap()
}

fn code(r: Response) -> (StatusCode, String) {
    let st = r.status();
    let v: serde_json::Value = r.json().unwrap_or(serde_json::Value::Null);
    (
        st,
        v["errors"][0]["code"].as_str().unwrap_or("").to_string(),
    )
}

fn push_blob(c: &Client, t: &TestRegistry, repo: &str, data: &[u8]) -> String {
    let d = sha(data).to_string();
    let r = c
        .post(t.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text());
    d
}

fn manifest_json(
    config: &str,
    config_len: usize,
    layers: &[(String, usize)],
    extra: &str,
) -> String {
    let ls: Vec<String> = layers
        .iter()
        .map(|(d, n)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{n}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_len}}},"layers":[{}]{extra}}}"#,
        ls.join(",")
    )
}

/// Push config + one layer + manifest; returns the manifest digest.
fn push_image(c: &Client, t: &TestRegistry, repo: &str, tag: &str, layer: &[u8]) -> String {
    let cfg = format!(r#"{{"architecture":"amd64","os":"linux","n":"{tag}"}}"#);
    let cd = push_blob(c, t, repo, cfg.as_bytes());
    let ld = push_blob(c, t, repo, layer);
    let m = manifest_json(&cd, cfg.len(), &[(ld, layer.len())], "");
    let r = c
        .put(t.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("Content-Type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text());
    sha(m.as_bytes()).to_string()
}

#[test]
fn blob_uploads_ranges_and_mounts() {
    let t = TestRegistry::start(Config::default());
    let c = http();
    assert_eq!(
        c.get(t.url("/v2/")).send().unwrap().status(),
        StatusCode::OK
    );

    // Monolithic POST ?digest, then HEAD and ranged GETs.
    let data = noise(1, 100_000);
    let d = push_blob(&c, &t, "a/b", &data);
    let r = c.head(t.url(&format!("/v2/a/b/blobs/{d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "100000");
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let r = c
        .get(t.url(&format!("/v2/a/b/blobs/{d}")))
        .header("Range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(r.bytes().unwrap().as_ref(), &data[10..20]);
    let r = c
        .get(t.url(&format!("/v2/a/b/blobs/{d}")))
        .header("Range", "bytes=200000-")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        c.get(t.url(&format!("/v2/a/b/blobs/{d}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .as_ref(),
        &data[..]
    );
    // The same blob in the content store once, referenced by the registry.
    assert!(t.store.blobs().exists(&sha(&data)));

    // Chunked upload: POST, PATCH with Content-Range, out-of-order chunk → 416 + Range,
    // status GET (resume), PUT with the last chunk.
    let data = noise(2, 300_000);
    let r = c.post(t.url("/v2/a/b/blobs/uploads/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .patch(t.url(&loc))
        .header("Content-Range", "0-99999")
        .header("Content-Type", "application/octet-stream")
        .body(data[..100_000].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-99999");
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    for bad in ["0-99999", "150000-199999"] {
        let r = c
            .patch(t.url(&loc))
            .header("Content-Range", bad)
            .body(data[..50_000].to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(r.headers()["range"], "0-99999");
    }
    let r = c.get(t.url(&loc)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], "0-99999");
    let r = c
        .patch(t.url(&loc))
        .header("Content-Range", "100000-199999")
        .body(data[100_000..200_000].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let d2 = sha(&data).to_string();
    let r = c
        .put(t.url(&format!("{loc}?digest={d2}")))
        .header("Content-Range", "200000-299999")
        .body(data[200_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text());
    assert_eq!(r.headers()["docker-content-digest"], d2.as_str());
    assert_eq!(
        c.get(t.url(&format!("/v2/a/b/blobs/{d2}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .as_ref(),
        &data[..]
    );
    // The finished session is gone.
    assert_eq!(
        code(c.get(t.url(&loc)).send().unwrap()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );

    // Digest mismatch on each upload path: nothing stored, session gone.
    let junk = noise(3, 5000);
    let wrong = sha(b"something else").to_string();
    let r = c
        .post(t.url(&format!("/v2/a/b/blobs/uploads/?digest={wrong}")))
        .body(junk.clone())
        .send()
        .unwrap();
    assert_eq!(code(r), (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    let r = c.post(t.url("/v2/a/b/blobs/uploads/")).send().unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .put(t.url(&format!("{loc}?digest={wrong}")))
        .body(junk.clone())
        .send()
        .unwrap();
    assert_eq!(code(r), (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    assert_eq!(
        code(c.get(t.url(&loc)).send().unwrap()).1,
        "BLOB_UPLOAD_UNKNOWN"
    );
    assert!(!t.store.blobs().exists(&sha(&junk)));
    assert!(!t.store.blobs().exists(&wrong.parse().unwrap()));
    assert_eq!(
        std::fs::read_dir(t.dir.path().join("registry/uploads"))
            .unwrap()
            .count(),
        0
    );
    let r = c
        .post(t.url("/v2/a/b/blobs/uploads/?digest=sha256:nothex"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(code(r), (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));

    // Cross-repository mount: from a repo that has it → 201; from one that lacks it → 202 upload.
    let r = c
        .post(t.url(&format!("/v2/other/blobs/uploads/?mount={d}&from=a/b")))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        c.head(t.url(&format!("/v2/other/blobs/{d}")))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = c
        .post(t.url(&format!("/v2/third/blobs/uploads/?mount={d}&from=nope")))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // A blob of one repository is unknown to another.
    assert_eq!(
        code(
            c.get(t.url(&format!("/v2/third/blobs/{d}")))
                .send()
                .unwrap()
        ),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into())
    );

    // Blob DELETE.
    let r = c
        .delete(t.url(&format!("/v2/other/blobs/{d}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        c.head(t.url(&format!("/v2/other/blobs/{d}")))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        code(
            c.delete(t.url(&format!("/v2/other/blobs/{d}")))
                .send()
                .unwrap()
        )
        .1,
        "BLOB_UNKNOWN"
    );

    // Names: invalid and path-escaping names are NAME_INVALID.
    for bad in [
        "/v2/UPPER/blobs/uploads/",
        "/v2/a/.../b/blobs/uploads/",
        "/v2/a%2F..%2Fb/blobs/uploads/",
        "/v2/-a/blobs/uploads/",
        "/v2/a//b/blobs/uploads/",
    ] {
        let r = c.post(t.url(bad)).send().unwrap();
        assert_eq!(
            code(r),
            (StatusCode::BAD_REQUEST, "NAME_INVALID".into()),
            "{bad}"
        );
    }
    assert_eq!(
        code(
            c.patch(t.url("/v2/a/b/blobs/uploads/ffff"))
                .body("x")
                .send()
                .unwrap()
        ),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );
}

#[test]
fn manifests_tags_catalog_referrers() {
    let t = TestRegistry::start(Config {
        max_page: 3,
        ..Default::default()
    });
    let c = http();
    let md = push_image(&c, &t, "app", "v1", &tar_with("f", b"one"));
    // GET/HEAD by tag and digest, with digest header and content type.
    for reference in ["v1", md.as_str()] {
        let r = c
            .get(t.url(&format!("/v2/app/manifests/{reference}")))
            .header("Accept", OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["docker-content-digest"], md.as_str());
        assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(sha(&r.bytes().unwrap()).to_string(), md);
        let r = c
            .head(t.url(&format!("/v2/app/manifests/{reference}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Accept that excludes the stored type → MANIFEST_UNKNOWN (no silent conversion).
    let r = c
        .get(t.url("/v2/app/manifests/v1"))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .unwrap();
    assert_eq!(code(r), (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into()));

    let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = push_blob(&c, &t, "app", cfg);
    let put = |reference: &str, ct: &str, body: String| {
        c.put(t.url(&format!("/v2/app/manifests/{reference}")))
            .header("Content-Type", ct)
            .body(body)
            .send()
            .unwrap()
    };
    // Missing blob, invalid JSON, mediaType vs Content-Type, hybrid, digest mismatch.
    let missing = sha(b"never uploaded").to_string();
    let r = put(
        "x",
        OCI_MANIFEST,
        manifest_json(&cd, cfg.len(), &[(missing, 3)], ""),
    );
    assert_eq!(
        code(r),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".into())
    );
    assert_eq!(
        code(put("x", OCI_MANIFEST, "{not json".into())),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into())
    );
    let good = manifest_json(&cd, cfg.len(), &[], "");
    assert_eq!(
        code(put("x", OCI_INDEX, good.clone())),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into())
    );
    let hybrid = manifest_json(&cd, cfg.len(), &[], r#","manifests":[]"#);
    assert_eq!(
        code(put("x", OCI_MANIFEST, hybrid)),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into())
    );
    assert_eq!(
        code(put(&missing_digest(), OCI_MANIFEST, good.clone())),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );
    assert_eq!(
        code(put("bad:tag:", OCI_MANIFEST, good.clone())).1,
        "DIGEST_INVALID"
    );
    // Size: exactly 4 MiB (the default limit; padding in an annotation) accepted, one byte more 413.
    let sized = |n: usize| {
        let empty = manifest_json(&cd, cfg.len(), &[], r#","annotations":{"pad":""}"#);
        let pad = "p".repeat(n - empty.len());
        manifest_json(
            &cd,
            cfg.len(),
            &[],
            &format!(r#","annotations":{{"pad":"{pad}"}}"#),
        )
    };
    let big = sized(4 << 20);
    assert_eq!(big.len(), 4 << 20);
    assert_eq!(put("big", OCI_MANIFEST, big).status(), StatusCode::CREATED);
    assert_eq!(
        code(put("huge", OCI_MANIFEST, sized((4 << 20) + 1))),
        (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID".into())
    );
    // By digest.
    let gd = sha(good.as_bytes()).to_string();
    let r = put(&gd, OCI_MANIFEST, good.clone());
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/app/manifests/{gd}").as_str()
    );

    // An index of the two manifests; then Accept negotiation serves its amd64 child.
    let idx = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{md}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{gd}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#
    );
    assert_eq!(
        put("multi", OCI_INDEX, idx.clone()).status(),
        StatusCode::CREATED
    );
    let r = c
        .get(t.url("/v2/app/manifests/multi"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], md.as_str());
    let r = c
        .get(t.url("/v2/app/manifests/multi"))
        .header("Accept", format!("{OCI_INDEX}, {OCI_MANIFEST}"))
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    let bad_idx = idx.replace(&md, &missing_digest());
    assert_eq!(
        code(put("multi2", OCI_INDEX, bad_idx)).1,
        "MANIFEST_BLOB_UNKNOWN"
    );

    // Referrers: two artifacts with a subject, filtered by artifactType.
    for (i, at) in [
        "application/vnd.example.sig",
        "application/vnd.example.sbom",
    ]
    .iter()
    .enumerate()
    {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{at}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{cd}","size":{}}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{md}","size":1}},"annotations":{{"i":"{i}"}}}}"#,
            cfg.len()
        );
        let d = sha(m.as_bytes()).to_string();
        let r = put(&d, OCI_MANIFEST, m);
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["oci-subject"], md.as_str());
    }
    let r = c
        .get(t.url(&format!("/v2/app/referrers/{md}")))
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    let r = c
        .get(t.url(&format!(
            "/v2/app/referrers/{md}?artifactType=application/vnd.example.sbom"
        )))
        .send()
        .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["annotations"]["i"], "1");
    let v: serde_json::Value = c
        .get(t.url(&format!("/v2/app/referrers/{gd}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 0);
    assert_eq!(
        code(c.get(t.url("/v2/app/referrers/sha256:zz")).send().unwrap()).1,
        "DIGEST_INVALID"
    );

    // Tags: n/last pagination with Link; bounded n.
    for tag in ["v2", "v3", "v4"] {
        push_image(&c, &t, "app", tag, &tar_with("f", tag.as_bytes()));
    }
    let v: serde_json::Value = c
        .get(t.url("/v2/app/tags/list?n=2"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["tags"], serde_json::json!(["big", "multi"]));
    let r = c
        .get(t.url("/v2/app/tags/list?n=2&last=multi"))
        .send()
        .unwrap();
    assert!(r.headers()["link"].to_str().unwrap().contains("last=v2"));
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1", "v2"]));
    let v: serde_json::Value = c
        .get(t.url("/v2/app/tags/list?n=1000"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        v["tags"].as_array().unwrap().len(),
        3,
        "n is bounded by max_page"
    );
    assert_eq!(
        code(c.get(t.url("/v2/nothere/tags/list")).send().unwrap()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
    assert_eq!(
        code(c.get(t.url("/v2/app/tags/list?n=x")).send().unwrap()).0,
        StatusCode::BAD_REQUEST
    );
    // Catalog.
    for r in ["b1", "b2", "b3"] {
        push_image(&c, &t, r, "t", b"x");
    }
    let r = c.get(t.url("/v2/_catalog?n=2")).send().unwrap();
    assert!(r.headers().contains_key("link"));
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["app", "b1"]));
    let v: serde_json::Value = c
        .get(t.url("/v2/_catalog?n=2&last=b1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["b2", "b3"]));

    // Manifest DELETE by tag (untag) and by digest; unknown ones.
    assert_eq!(
        c.delete(t.url("/v2/app/manifests/v4"))
            .send()
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        code(c.get(t.url("/v2/app/manifests/v4")).send().unwrap()).1,
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        c.delete(t.url(&format!("/v2/app/manifests/{md}")))
            .send()
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        code(c.get(t.url("/v2/app/manifests/v1")).send().unwrap()).1,
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        code(
            c.get(t.url(&format!("/v2/app/manifests/{md}")))
                .send()
                .unwrap()
        ),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    assert_eq!(
        code(
            c.delete(t.url(&format!("/v2/app/manifests/{md}")))
                .send()
                .unwrap()
        )
        .1,
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        code(c.get(t.url("/v2/nothere/manifests/latest")).send().unwrap()).1,
        "NAME_UNKNOWN"
    );
}

fn missing_digest() -> String {
    sha(b"no such manifest").to_string()
}

fn htpasswd() -> Arc<gabang_registry::auth::Htpasswd> {
    let h = bcrypt::hash("s3cret", 4).unwrap();
    Arc::new(gabang_registry::auth::Htpasswd::parse(&format!("alice:{h}\n")).unwrap())
}

#[test]
fn basic_and_token_auth() {
    let t = TestRegistry::start(Config {
        auth: AuthMode::Basic(htpasswd()),
        ..Default::default()
    });
    let c = http();
    let r = c.get(t.url("/v2/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(code(r).1, "UNAUTHORIZED");
    assert_eq!(
        c.get(t.url("/v2/"))
            .basic_auth("alice", Some("bad"))
            .send()
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.get(t.url("/v2/"))
            .basic_auth("alice", Some("s3cret"))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let t = TestRegistry::start(Config {
        auth: AuthMode::Token(htpasswd()),
        ..Default::default()
    });
    let r = c.post(t.url("/v2/x/blobs/uploads/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let ch = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ch.starts_with("Bearer realm=\"http://127.0.0.1:"), "{ch}");
    assert!(ch.contains("scope=\"repository:x:pull,push\""), "{ch}");
    assert_eq!(
        c.get(t.url("/token?scope=repository:x:pull"))
            .send()
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let v: serde_json::Value = c
        .get(t.url("/token?service=gabang-registry&scope=repository:x:pull"))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let tok = v["token"].as_str().unwrap().to_string();
    // A pull token reads but does not push; a push token pushes.
    assert_eq!(
        c.get(t.url("/v2/"))
            .bearer_auth(&tok)
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = c
        .post(t.url("/v2/x/blobs/uploads/"))
        .bearer_auth(&tok)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(r).1, "DENIED");
    let v: serde_json::Value = c
        .get(t.url("/token?scope=repository:x:pull,push"))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let tok = v["token"].as_str().unwrap();
    assert_eq!(
        c.post(t.url("/v2/x/blobs/uploads/"))
            .bearer_auth(tok)
            .send()
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        c.get(t.url("/v2/"))
            .bearer_auth("forged")
            .send()
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // The client does the token dance with credentials, and fails clearly without them.
    let img = make_image(&t.store, "local/auth:1", &[tar_with("a", b"auth")]);
    let dest = gabang_content::ImageRef::parse(&format!("{}/x:1", t.host())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = gabang_registry::client::Options {
        docker_config: Some(dir.path().join("config.json")),
        ..Default::default()
    };
    let err = gabang_registry::client::push(&t.store, "local/auth:1", &dest, &opts).unwrap_err();
    assert!(matches!(err, gabang_registry::Error::Auth { .. }), "{err}");
    assert!(gabang_registry::client::login(&t.host(), "alice", "wrong", &opts).is_err());
    gabang_registry::client::login(&t.host(), "alice", "s3cret", &opts).unwrap();
    let rep = gabang_registry::client::push(&t.store, "local/auth:1", &dest, &opts).unwrap();
    assert_eq!(rep.manifest_digest, img.manifest_digest.to_string());
    assert!(gabang_registry::client::logout(&t.host(), &opts).unwrap());
}

#[test]
fn tls_with_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (cert, key, ca) = (
        dir.path().join("c.pem"),
        dir.path().join("k.pem"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(
        p("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let steps: Vec<Vec<String>> = vec![
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=gabang-test-ca",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &p("k.pem"),
            "-out",
            &p("leaf.csr"),
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        vec![
            "x509",
            "-req",
            "-in",
            &p("leaf.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &p("ext"),
            "-out",
            &p("c.pem"),
        ]
        .into_iter()
        .map(String::from)
        .collect(),
    ];
    for args in steps {
        let st = std::process::Command::new("openssl")
            .args(&args)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args:?}");
    }
    let tls = gabang_registry::server::load_tls(&cert, &key).unwrap();
    let t = TestRegistry::start_tls(Config::default(), Some(tls));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let c = Client::builder().add_root_certificate(ca).build().unwrap();
    let r = c
        .get(format!("https://localhost:{}/v2/", t.server.addr.port()))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Plain HTTP to the TLS port fails.
    assert!(http().get(t.url("/v2/")).send().is_err());
    assert!(gabang_registry::server::load_tls(&key, &key).is_err());
}

struct FakeClock(AtomicI64);
impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Online GC: delete an image, then collect while other clients push images that share its
/// layers. Every push succeeds, every remaining manifest's blobs are all there, and only the
/// deleted image's own blobs are gone.
#[test]
fn online_gc_never_loses_blobs_of_concurrent_pushes() {
    let clock = Arc::new(FakeClock(AtomicI64::new(1_000_000_000)));
    let t = TestRegistry::start(Config {
        gc_grace: std::time::Duration::from_secs(60),
        clock: clock.clone(),
        ..Default::default()
    });
    let c = http();
    let shared = noise(10, 200_000);
    let own = noise(11, 150_000);
    let old_cfg = br#"{"old":1}"#;
    let cd = push_blob(&c, &t, "app", old_cfg);
    let s = push_blob(&c, &t, "app", &shared);
    let o = push_blob(&c, &t, "app", &own);
    let m = manifest_json(
        &cd,
        old_cfg.len(),
        &[(s.clone(), shared.len()), (o.clone(), own.len())],
        "",
    );
    let md = sha(m.as_bytes()).to_string();
    let r = c
        .put(t.url("/v2/app/manifests/old"))
        .header("Content-Type", OCI_MANIFEST)
        .body(m)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        c.delete(t.url(&format!("/v2/app/manifests/{md}")))
            .send()
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    // Time passes beyond the grace period: the old image's blobs are now collectable.
    clock.0.fetch_add(3_600_000, Ordering::SeqCst);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_thread = {
        let reg = t.reg.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut runs = 0;
            let mut removed = 0;
            while !stop.load(Ordering::SeqCst) || runs < 3 {
                let r = rt.block_on(reg.gc()).unwrap();
                removed += r.blobs_removed;
                runs += 1;
            }
            (runs, removed)
        })
    };
    // Concurrent pushers reuse the shared layer: HEAD says it's there, they skip it, push
    // their own layer, then the manifest.
    let pushers: Vec<_> = (0..4)
        .map(|i| {
            let url = t.url("");
            let shared = shared.clone();
            std::thread::spawn(move || {
                let c = http();
                let mut digests = vec![];
                for round in 0..5 {
                    let repo = "app";
                    let sd = sha(&shared).to_string();
                    let head = c
                        .head(format!("{url}/v2/{repo}/blobs/{sd}"))
                        .send()
                        .unwrap();
                    if head.status() != StatusCode::OK {
                        let r = c
                            .post(format!("{url}/v2/{repo}/blobs/uploads/?digest={sd}"))
                            .body(shared.clone())
                            .send()
                            .unwrap();
                        assert_eq!(r.status(), StatusCode::CREATED);
                    }
                    let cfg = format!(r#"{{"pusher":{i},"round":{round}}}"#);
                    let layer = noise(1000 + i * 10 + round, 50_000);
                    let mut ds = vec![];
                    for b in [cfg.as_bytes(), &layer[..]] {
                        let d = sha(b).to_string();
                        let r = c
                            .post(format!("{url}/v2/{repo}/blobs/uploads/?digest={d}"))
                            .body(b.to_vec())
                            .send()
                            .unwrap();
                        assert_eq!(r.status(), StatusCode::CREATED);
                        ds.push(d);
                    }
                    let m = manifest_json(
                        &ds[0],
                        cfg.len(),
                        &[(sd.clone(), shared.len()), (ds[1].clone(), layer.len())],
                        "",
                    );
                    let r = c
                        .put(format!("{url}/v2/{repo}/manifests/p{i}-{round}"))
                        .header("Content-Type", OCI_MANIFEST)
                        .body(m.clone())
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text());
                    digests.push((sha(m.as_bytes()).to_string(), ds, sd));
                }
                digests
            })
        })
        .collect();
    let pushed: Vec<_> = pushers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    stop.store(true, Ordering::SeqCst);
    let (runs, _) = gc_thread.join().unwrap();
    assert!(runs >= 3);
    // One more collection after the pushes.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(t.reg.gc()).unwrap();
    // Every pushed image is complete: manifest and all blobs readable and intact.
    for (m, ds, sd) in &pushed {
        let r = c
            .get(t.url(&format!("/v2/app/manifests/{m}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        for d in ds.iter().chain([sd]) {
            let b = c.get(t.url(&format!("/v2/app/blobs/{d}"))).send().unwrap();
            assert_eq!(b.status(), StatusCode::OK, "{d}");
            assert_eq!(&sha(&b.bytes().unwrap()).to_string(), d);
        }
    }
    // The deleted image's own blobs (layer, config, manifest) are gone from the store.
    for d in [&o, &cd, &md] {
        assert!(
            !t.store.blobs().exists(&d.parse().unwrap()),
            "{d} should be collected"
        );
    }
    assert!(t.store.blobs().exists(&s.parse().unwrap()));
}

/// An upload survives a server restart: its offset is in the db and its bytes on disk, so the
/// client asks for the status and continues; the digest is recomputed from the file.
#[test]
fn upload_resumes_after_restart_and_sessions_are_bounded() {
    use gabang_registry::server::BackgroundServer;
    let dir = tempfile::tempdir().unwrap();
    let open = |max_uploads: u64| {
        let store = Arc::new(gabang_content::Store::open(dir.path()).unwrap());
        let cfg = Config {
            max_uploads,
            ..Default::default()
        };
        let reg = Arc::new(gabang_registry::Registry::open(store, cfg).unwrap());
        BackgroundServer::start(reg, "127.0.0.1:0".parse().unwrap(), None).unwrap()
    };
    let c = http();
    let data = noise(77, 200_000);
    let s1 = open(1);
    let base1 = format!("http://{}", s1.addr);
    let r = c
        .post(format!("{base1}/v2/r/blobs/uploads/"))
        .send()
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    // A second session exceeds max_uploads = 1.
    let r = c
        .post(format!("{base1}/v2/r/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(
        code(r),
        (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS".into())
    );
    let r = c
        .patch(format!("{base1}{loc}"))
        .body(data[..120_000].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    drop(s1);
    let s2 = open(10);
    let base2 = format!("http://{}", s2.addr);
    let r = c.get(format!("{base2}{loc}")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], "0-119999");
    let d = sha(&data).to_string();
    let r = c
        .put(format!("{base2}{loc}?digest={d}"))
        .header("Content-Range", "120000-199999")
        .body(data[120_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text());
    let got = c
        .get(format!("{base2}/v2/r/blobs/{d}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(got.as_ref(), &data[..]);
}

/// A loopback TCP proxy that cuts the first connection over which the client has sent more
/// than `limit` bytes.
fn cutting_proxy(
    upstream: std::net::SocketAddr,
    limit: u64,
) -> (u16, Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cut2 = cut.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(client) = conn else { return };
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_r, mut c_w) = (server, client);
            let cut = cut2.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let mut sent = 0u64;
                loop {
                    let k = match c_r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => k,
                    };
                    // The first connection to carry `limit` bytes is cut, once (which one
                    // carries the upload depends on the client's pool).
                    if sent + k as u64 > limit
                        && cut
                            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                    {
                        let _ = c_r.shutdown(Shutdown::Both);
                        let _ = s_w.shutdown(Shutdown::Both);
                        return;
                    }
                    sent += k as u64;
                    if s_w.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
                let _ = s_w.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_r, &mut c_w);
                let _ = c_w.shutdown(Shutdown::Write);
            });
        }
    });
    (port, cut)
}

/// The client's chunked upload resumes from the server's Range after the connection breaks
/// in the middle of a chunk, and the blob arrives intact.
#[test]
fn client_chunked_upload_resumes_after_a_broken_connection() {
    let t = TestRegistry::start(Config::default());
    let (port, cut) = cutting_proxy(t.server.addr, 1_500_000);
    let img = make_image(
        &t.store,
        "local/resume:1",
        &[tar_with("big", &noise(9, 3 << 20))],
    );
    let dir = tempfile::tempdir().unwrap();
    let opts = gabang_registry::client::Options {
        docker_config: Some(dir.path().join("c.json")),
        chunked_threshold: 1 << 20,
        chunk_size: 1 << 20,
        concurrency: 1,
        ..Default::default()
    };
    // Push the image under a repository that does not have the layer (no mount possible:
    // the store already has the blob but no repository links it).
    let dest = gabang_content::ImageRef::parse(&format!("127.0.0.1:{port}/resume/x:1")).unwrap();
    let rep = gabang_registry::client::push(&t.store, "local/resume:1", &dest, &opts).unwrap();
    assert!(
        cut.load(Ordering::SeqCst),
        "the proxy never cut a connection"
    );
    assert_eq!(rep.manifest_digest, img.manifest_digest.to_string());
    let c = http();
    for d in img.layer_digests().unwrap() {
        let b = c
            .get(t.url(&format!("/v2/resume/x/blobs/{d}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(sha(&b), d);
    }
}
