//! kube-rs (`kube::runtime::watcher` + `reflector`) against the server: with a stream
//! of updates and short server-side watch timeouts, the client lists once and then
//! only watches (no relist storm); a genuine 410 (history compacted past the
//! watcher's resourceVersion) costs exactly one more list; the reflector's cache
//! ends equal to the server's state.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};

async fn client(s: &support::TestServer) -> kube::Client {
    let kc = Kubeconfig::read_from(&s.handle.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

fn cm(name: &str, v: u32) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("v".to_string(), v.to_string())])),
        ..Default::default()
    }
}

/// Waits (bounded) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn cache_of(store: &reflector::Store<ConfigMap>) -> BTreeMap<String, String> {
    store
        .state()
        .iter()
        .map(|c| {
            (
                c.metadata.name.clone().unwrap_or_default(),
                c.data
                    .as_ref()
                    .and_then(|d| d.get("v").cloned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_reflector_lists_once_then_watches() {
    let s = support::start().await;
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), 0))
            .await
            .unwrap();
    }
    let before = s.handle.requests();

    // Server-side watch timeout of 1 s: the watcher re-watches often.
    let (reader, writer) = reflector::store::<ConfigMap>();
    let cfg = watcher::Config::default().timeout(1);
    let stream = reflector(writer, watcher(cms.clone(), cfg)).default_backoff();
    let driver = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                eprintln!("watcher error: {e}");
            }
        }
    });
    reader.wait_until_ready().await.unwrap();

    // A stream of updates over several watch timeouts.
    let mut want = BTreeMap::new();
    for round in 1..=30u32 {
        let name = format!("c{}", round % 5);
        let patch = serde_json::json!({"data": {"v": round.to_string()}});
        cms.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        want.insert(name, round.to_string());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    eventually("the reflector caught up", || cache_of(&reader) == want).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = s.handle.requests();
    eprintln!("after the update stream: {after:?} (before: {before:?})");
    assert_eq!(after.lists - before.lists, 1, "one initial list: {after:?}");
    assert!(
        after.watches - before.watches >= 4,
        "the watch was re-established after each server timeout: {after:?}"
    );

    // A genuine 410: writes elsewhere move the store on while the watcher's
    // resourceVersion stays; compacting past it makes its next watch fail with 410.
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    for i in 0..3 {
        let sec = Secret {
            metadata: ObjectMeta {
                name: Some(format!("s{i}")),
                ..Default::default()
            },
            ..Default::default()
        };
        secrets.create(&PostParams::default(), &sec).await.unwrap();
    }
    let rev = s.store.current_revision().await.unwrap();
    s.store.compact(rev).await.unwrap();
    let relisted = || s.handle.requests().lists - before.lists == 2;
    eventually("one relist after 410", relisted).await;
    cms.patch(
        "c0",
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"data": {"v": "final"}})),
    )
    .await
    .unwrap();
    want.insert("c0".into(), "final".into());
    eventually("the reflector sees writes after the relist", || {
        cache_of(&reader) == want
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let end = s.handle.requests();
    eprintln!("after the 410: {end:?}");
    assert_eq!(
        end.lists - before.lists,
        2,
        "no list beyond the 410: {end:?}"
    );
    assert!(end.watches > after.watches + 2, "{end:?}");
    driver.abort();
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_lists_gets_and_watches() {
    let s = support::start().await;
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(&PostParams::default(), &cm("m1", 1))
        .await
        .unwrap();
    // kube-rs asks for PartialObjectMetadataList / PartialObjectMetadata.
    let list = cms.list_metadata(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("m1"));
    let one = cms.get_metadata("m1").await.unwrap();
    assert_eq!(one.metadata.name.as_deref(), Some("m1"));
    assert!(one.metadata.uid.is_some());
    // Raw: metadata only, no data, of the meta.k8s.io kinds.
    let accept = "Accept: application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
    let (code, b) = s.curl(
        true,
        &["-H", accept],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["apiVersion"].as_str()),
        (Some("PartialObjectMetadataList"), Some("meta.k8s.io/v1"))
    );
    assert_eq!(v["items"][0]["kind"], "PartialObjectMetadata");
    assert!(v["items"][0].get("data").is_none(), "{v}");
    // A metadata watcher sees a change.
    let mut events = kube::runtime::metadata_watcher(cms.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("an event")
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("m1"));
    cms.create(&PostParams::default(), &cm("m2", 1))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("an event")
        .unwrap()
        .unwrap();
    assert_eq!(next.metadata.name.as_deref(), Some("m2"));
    s.handle.shutdown().await;
}
