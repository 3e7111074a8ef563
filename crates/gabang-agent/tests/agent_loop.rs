//! The agent loop against the real gabang-apiserver (HTTPS on loopback, SQLite in a temp dir)
//! with a fake pod backend: Node registration fields, Lease renewals, pod sync → status and
//! Events written (only when the status changed), the deletion handshake (terminate with the
//! pod's grace, then the final delete), pods force-deleted in the API, orphans on the host,
//! adoption, and the pod CIDR of a second node.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gabang_agent::agent::{self, AgentConfig, ApiConfig, PodBackend};
use gabang_agent::node::{bridge_name, NodeConfig, KUBELET_VERSION};
use gabang_agent::pods::{LocalPod, SyncOutcome};
use gabang_agent::podspec::RefSource;
use gabang_apiserver::{serve, ServerConfig, ServerHandle, StoreSpec};
use gabang_controllers::cluster::Cluster;
use gabang_controllers::gc::Propagation;
use gabang_controllers::http::HttpCluster;
use gabang_store::{Backend, SqliteBackend, SqliteConfig};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Event, Node, Pod, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[derive(Default)]
struct Fake {
    syncs: Mutex<BTreeMap<String, usize>>,
    terminated: Mutex<Vec<(String, Duration)>>,
    local: Mutex<Vec<LocalPod>>,
    /// What the last sync read through the RefSource (configMap "cfg" key "k").
    seen_config: Mutex<Option<String>>,
}

impl PodBackend for Fake {
    fn sync(&self, pod: &Pod, refs: &dyn RefSource) -> gabang_agent::Result<SyncOutcome> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let n = {
            let mut s = self.syncs.lock().unwrap();
            let n = s.entry(uid).or_default();
            *n += 1;
            *n
        };
        if let Ok(Some(cm)) = refs.config_map("default", "cfg") {
            *self.seen_config.lock().unwrap() = cm.data.and_then(|d| d.get("k").cloned());
        }
        Ok(SyncOutcome {
            status: PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some("10.42.0.7".into()),
                host_ip: Some("127.0.0.1".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            requeue_after: None,
            events: if n == 1 {
                vec![(
                    "Normal".into(),
                    "Started".into(),
                    "Started container c".into(),
                )]
            } else {
                vec![]
            },
        })
    }
    fn terminate(&self, uid: &str, grace: Duration) -> gabang_agent::Result<()> {
        self.terminated.lock().unwrap().push((uid.into(), grace));
        self.local.lock().unwrap().retain(|p| p.uid != uid);
        Ok(())
    }
    fn local_pods(&self) -> gabang_agent::Result<Vec<LocalPod>> {
        Ok(self.local.lock().unwrap().clone())
    }
}

impl Fake {
    fn syncs_of(&self, uid: &str) -> usize {
        self.syncs.lock().unwrap().get(uid).copied().unwrap_or(0)
    }
    fn terminated_uid(&self, uid: &str) -> Option<Duration> {
        self.terminated
            .lock()
            .unwrap()
            .iter()
            .find(|(u, _)| u == uid)
            .map(|(_, g)| *g)
    }
}

struct Api {
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    handle: ServerHandle,
}

impl Api {
    fn start() -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Backend> = Arc::new(
            SqliteBackend::open(&dir.path().join("state.db"), SqliteConfig::default()).unwrap(),
        );
        let handle = rt
            .block_on(serve(ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                data_dir: dir.path().join("pki"),
                store: StoreSpec::Backend(store),
            }))
            .unwrap();
        // The agent talks to the server over its local socket, as in `gabang up`; the
        // tests' own clients over TCP + TLS.
        let local = dir.path().join("api.sock");
        rt.block_on(async { handle.listen_local(&local) }).unwrap();
        Api {
            _rt: rt,
            _dir: dir,
            handle,
        }
    }
    fn config(&self) -> ApiConfig {
        ApiConfig {
            addr: self.handle.local_addr,
            ca_pem: self.handle.ca_pem.clone(),
            token: self.handle.token.clone(),
            local: Some(self._dir.path().join("api.sock")),
        }
    }
    fn client(&self) -> HttpCluster {
        HttpCluster::new(
            self.handle.local_addr,
            &self.handle.ca_pem,
            &self.handle.token,
        )
        .unwrap()
    }
}

fn agent_config(api: &ApiConfig, name: &str) -> AgentConfig {
    let cidr = agent::resolve_pod_cidr(api, name, None).unwrap();
    let mut cfg = AgentConfig::new(NodeConfig {
        name: name.into(),
        node_ip: "127.0.0.1".parse().unwrap(),
        pod_cidr: cidr,
        endpoint_port: 10250,
        runtime_version: "0.1.0".into(),
    });
    cfg.resync = Duration::from_millis(200);
    cfg.lease_every = Duration::from_millis(300);
    cfg.status_every = Duration::from_millis(500);
    cfg.watch_timeout_secs = 5;
    cfg
}

fn pod(name: &str, node: &str, grace: i64) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            termination_grace_period_seconds: Some(grace),
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox:1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn registers_node_and_renews_lease() {
    let api = Api::start();
    let c = api.client();
    let fake = Arc::new(Fake::default());
    let h = agent::start(api.config(), agent_config(&api.config(), "n1"), fake).unwrap();

    let n: Node = c.get("", "n1").unwrap().expect("node registered");
    let spec = n.spec.clone().unwrap();
    assert_eq!(spec.pod_cidr.as_deref(), Some("10.42.0.0/24"));
    assert_eq!(spec.pod_cidrs, Some(vec!["10.42.0.0/24".to_string()]));
    let st = n.status.clone().unwrap();
    let cap = st.capacity.clone().unwrap();
    assert_eq!(cap["pods"].0, "110");
    assert!(cap["cpu"].0.parse::<u32>().unwrap() >= 1);
    assert!(cap["memory"].0.ends_with("Ki"));
    assert_eq!(st.allocatable, st.capacity);
    let addrs = st.addresses.clone().unwrap();
    assert!(addrs
        .iter()
        .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"));
    assert!(addrs
        .iter()
        .any(|a| a.type_ == "Hostname" && a.address == "n1"));
    assert_eq!(
        st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
        10250
    );
    let info = st.node_info.unwrap();
    assert_eq!(info.kubelet_version, KUBELET_VERSION);
    assert_eq!(info.container_runtime_version, "gabang://0.1.0");
    assert_eq!(info.operating_system, "linux");
    assert!(!info.kernel_version.is_empty());
    let conds = st.conditions.unwrap();
    let cond = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().status.clone();
    assert_eq!(cond("Ready"), "True");
    assert_eq!(cond("MemoryPressure"), "False");
    assert_eq!(cond("DiskPressure"), "False");
    assert_eq!(cond("PIDPressure"), "False");
    assert_eq!(
        n.metadata.labels.clone().unwrap()["kubernetes.io/hostname"],
        "n1"
    );

    let lease: Lease = c.get("kube-node-lease", "n1").unwrap().expect("lease");
    let ls = lease.spec.unwrap();
    assert_eq!(ls.lease_duration_seconds, Some(40));
    assert_eq!(ls.holder_identity.as_deref(), Some("n1"));
    let first = ls.renew_time.unwrap().0;
    eventually("a lease renewal", || {
        let l: Lease = c.get("kube-node-lease", "n1").unwrap().unwrap();
        l.spec.unwrap().renew_time.unwrap().0 > first
    });
    // The node status is refreshed too (heartbeat time moves).
    let hb = |n: &Node| {
        n.status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .last_heartbeat_time
            .clone()
            .unwrap()
            .0
    };
    let hb0 = hb(&n);
    eventually("a node status refresh", || {
        let n: Node = c.get("", "n1").unwrap().unwrap();
        hb(&n) > hb0
    });
    h.stop();
}

#[test]
fn syncs_pods_writes_status_and_finishes_deletions() {
    let api = Api::start();
    let c = api.client();
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("cfg".into());
    cm.metadata.namespace = Some("default".into());
    cm.data = Some(BTreeMap::from([("k".to_string(), "v1".to_string())]));
    c.create(&cm).unwrap();
    let fake = Arc::new(Fake::default());
    let h = agent::start(
        api.config(),
        agent_config(&api.config(), "n1"),
        fake.clone(),
    )
    .unwrap();

    // A pod bound to another node is not ours.
    let other = c.create(&pod("other", "n2", 5)).unwrap();
    let p = c.create(&pod("web", "n1", 7)).unwrap();
    let uid = p.metadata.uid.clone().unwrap();
    eventually("status written", || {
        let p: Pod = c.get("default", "web").unwrap().unwrap();
        p.status
            .is_some_and(|s| s.phase.as_deref() == Some("Running") && s.pod_ip.is_some())
    });
    assert_eq!(fake.seen_config.lock().unwrap().as_deref(), Some("v1"));
    // The Event of the first sync is recorded against the pod.
    eventually("an event", || {
        let evs: Vec<Event> = c.list().unwrap();
        evs.iter().any(|e| {
            e.involved_object.uid.as_deref() == Some(uid.as_str())
                && e.reason.as_deref() == Some("Started")
        })
    });
    // Resyncs with an unchanged status do not write again.
    let rv = c
        .get::<Pod>("default", "web")
        .unwrap()
        .unwrap()
        .metadata
        .resource_version;
    let n = fake.syncs_of(&uid);
    eventually("more syncs", || fake.syncs_of(&uid) >= n + 3);
    let rv2 = c
        .get::<Pod>("default", "web")
        .unwrap()
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(rv, rv2, "status rewritten although unchanged");
    assert_eq!(fake.syncs_of(other.metadata.uid.as_deref().unwrap()), 0);

    // Graceful delete: the pod stays (terminating) until the agent stopped it with the
    // pod's grace and made the final delete.
    c.delete::<Pod>("default", "web", Propagation::Background)
        .unwrap();
    eventually("the final delete", || {
        c.get::<Pod>("default", "web").unwrap().is_none()
    });
    assert_eq!(fake.terminated_uid(&uid), Some(Duration::from_secs(7)));

    // A pod removed from the API without the handshake is stopped too.
    let p2 = c.create(&pod("web2", "n1", 3)).unwrap();
    let uid2 = p2.metadata.uid.clone().unwrap();
    eventually("web2 synced", || fake.syncs_of(&uid2) > 0);
    c.force_delete_pod("default", "web2").unwrap();
    eventually("web2 terminated", || fake.terminated_uid(&uid2).is_some());
    assert!(fake
        .terminated_uid(other.metadata.uid.as_deref().unwrap())
        .is_none());
    h.stop();
}

#[test]
fn adopts_known_pods_and_terminates_orphans() {
    let api = Api::start();
    let c = api.client();
    let p = c.create(&pod("kept", "n1", 5)).unwrap();
    let kept = p.metadata.uid.clone().unwrap();
    let fake = Arc::new(Fake::default());
    *fake.local.lock().unwrap() = vec![
        LocalPod {
            uid: kept.clone(),
            namespace: "default".into(),
            name: "kept".into(),
        },
        LocalPod {
            uid: "orphan-uid".into(),
            namespace: "default".into(),
            name: "gone".into(),
        },
    ];
    let mut cfg = agent_config(&api.config(), "n1");
    cfg.orphan_grace = Duration::from_secs(3);
    let h = agent::start(api.config(), cfg, fake.clone()).unwrap();
    eventually("the orphan terminated", || {
        fake.terminated_uid("orphan-uid").is_some()
    });
    assert_eq!(
        fake.terminated_uid("orphan-uid"),
        Some(Duration::from_secs(3))
    );
    eventually("the known pod synced", || fake.syncs_of(&kept) >= 2);
    assert!(
        fake.terminated_uid(&kept).is_none(),
        "adopted pod was stopped"
    );
    h.stop();
}

#[test]
fn second_node_gets_its_own_pod_cidr() {
    let api = Api::start();
    let c = api.client();
    let h1 = agent::start(
        api.config(),
        agent_config(&api.config(), "n1"),
        Arc::new(Fake::default()),
    )
    .unwrap();
    let cfg2 = agent_config(&api.config(), "n2");
    assert_eq!(cfg2.node.pod_cidr.0.to_string(), "10.42.1.0");
    assert_eq!(bridge_name(cfg2.node.pod_cidr), "gbk1");
    let h2 = agent::start(api.config(), cfg2, Arc::new(Fake::default())).unwrap();
    let n2: Node = c.get("", "n2").unwrap().unwrap();
    assert_eq!(n2.spec.unwrap().pod_cidr.as_deref(), Some("10.42.1.0/24"));
    // A restarted first node keeps its range.
    h1.stop();
    let again = agent::resolve_pod_cidr(&api.config(), "n1", None).unwrap();
    assert_eq!(again.0.to_string(), "10.42.0.0");
    h2.stop();
}
