use super::*;
use crate::fixtures::*;
use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, NodeSelector};

fn bind_node(d: &Decision) -> &str {
    match d {
        Decision::Bind { node } => node,
        other => panic!("expected a binding, got {other:?}"),
    }
}

fn unsched(d: &Decision) -> &str {
    match d {
        Decision::Unschedulable { message } => message,
        other => panic!("expected unschedulable, got {other:?}"),
    }
}

fn with_affinity(mut p: Pod, exprs: Vec<(&str, &str, &[&str])>) -> Pod {
    let term = NodeSelectorTerm {
        match_expressions: Some(
            exprs
                .into_iter()
                .map(|(k, op, vs)| NodeSelectorRequirement {
                    key: k.into(),
                    operator: op.into(),
                    values: Some(vs.iter().map(|s| s.to_string()).collect()),
                })
                .collect(),
        ),
        match_fields: None,
    };
    p.spec.as_mut().unwrap().affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![term],
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    p
}

#[test]
fn kubernetes_style_message_counts_each_node_reason() {
    let nodes = vec![
        with_taint(node("a", "4", "8Gi", 110), "dedicated", "gpu", "NoSchedule"),
        node("b", "1", "8Gi", 110),
        node("c", "1", "8Gi", 110),
    ];
    let mut s = Scheduler::new(&nodes, &[]);
    let d = s.schedule(&pod("default", "p", "2", "1Gi"));
    assert_eq!(
        unsched(&d),
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu."
    );
}

#[test]
fn a_tainted_node_reports_its_taint_before_node_affinity() {
    // The tainted node matches neither the pod's nodeSelector nor its tolerations: the
    // reason given is the taint (TaintToleration runs before NodeAffinity).
    let nodes = vec![
        with_taint(node("a", "4", "8Gi", 110), "dedicated", "gpu", "NoSchedule"),
        node("b", "4", "8Gi", 110),
    ];
    let mut p = pod("default", "p", "", "");
    p.spec.as_mut().unwrap().node_selector = Some(labels(&[("disk", "ssd")]));
    let mut s = Scheduler::new(&nodes, &[]);
    assert_eq!(
        unsched(&s.schedule(&p)),
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}."
    );
    let p = with_affinity(pod("default", "q", "", ""), vec![("zone", "In", &["z1"])]);
    let mut s = Scheduler::new(&nodes, &[]);
    assert_eq!(
        unsched(&s.schedule(&p)),
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}."
    );
}

#[test]
fn resources_fill_up_and_pod_count_limit() {
    let nodes = vec![node("a", "2", "4Gi", 3)];
    let mut s = Scheduler::new(&nodes, &[]);
    assert_eq!(bind_node(&s.schedule(&pod("d", "p1", "1", "1Gi"))), "a");
    assert_eq!(bind_node(&s.schedule(&pod("d", "p2", "1", "1Gi"))), "a");
    // cpu is full now; memory still fits.
    assert_eq!(
        unsched(&s.schedule(&pod("d", "p3", "500m", "1Gi"))),
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    assert_eq!(
        unsched(&s.schedule(&pod("d", "p3", "500m", "3Gi"))),
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
    );
    // A best-effort pod still fits until the pod count limit.
    assert_eq!(bind_node(&s.schedule(&pod("d", "p4", "", ""))), "a");
    assert_eq!(
        unsched(&s.schedule(&pod("d", "p5", "", ""))),
        "0/1 nodes are available: 1 Too many pods."
    );
}

#[test]
fn already_bound_pods_count_and_terminated_do_not() {
    let nodes = vec![node("a", "2", "4Gi", 110)];
    let mut done = bound(pod("d", "old", "2", ""), "a");
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut s = Scheduler::new(&nodes, &[bound(pod("d", "x", "1500m", ""), "a"), done]);
    assert!(matches!(
        s.schedule(&pod("d", "p", "1", "")),
        Decision::Unschedulable { .. }
    ));
    assert_eq!(bind_node(&s.schedule(&pod("d", "p", "500m", ""))), "a");
    // Removing the bound pod frees its share.
    s.remove_pod("a", &bound(pod("d", "x", "1500m", ""), "a"));
    assert_eq!(bind_node(&s.schedule(&pod("d", "q", "1500m", ""))), "a");
}

#[test]
fn node_selector_and_unschedulable_and_not_ready() {
    let mut cordoned = with_labels(node("a", "4", "8Gi", 110), &[("disk", "ssd")]);
    cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
    let mut down = with_labels(node("b", "4", "8Gi", 110), &[("disk", "ssd")]);
    down.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "Unknown".into();
    let hdd = with_labels(node("c", "4", "8Gi", 110), &[("disk", "hdd")]);
    let ssd = with_labels(node("d", "4", "8Gi", 110), &[("disk", "ssd")]);
    let mut s = Scheduler::new(&[cordoned.clone(), down.clone(), hdd.clone(), ssd], &[]);
    let mut p = pod("ns", "p", "100m", "");
    p.spec.as_mut().unwrap().node_selector = Some(labels(&[("disk", "ssd")]));
    assert_eq!(bind_node(&s.schedule(&p)), "d");
    let mut s = Scheduler::new(&[cordoned, down, hdd], &[]);
    assert_eq!(
        unsched(&s.schedule(&p)),
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were not ready, 1 node(s) were unschedulable."
    );
}

#[test]
fn required_node_affinity_operators() {
    let nodes = vec![
        with_labels(node("n1", "4", "8Gi", 110), &[("zone", "a"), ("gen", "3")]),
        with_labels(node("n2", "4", "8Gi", 110), &[("zone", "b"), ("gen", "5")]),
        with_labels(node("n3", "4", "8Gi", 110), &[("zone", "c")]),
    ];
    let place = |exprs: Vec<(&str, &str, &[&str])>| {
        let mut s = Scheduler::new(&nodes, &[]);
        match s.schedule(&with_affinity(pod("d", "p", "", ""), exprs)) {
            Decision::Bind { node } => node,
            Decision::Unschedulable { message } => message,
        }
    };
    assert_eq!(
        place(vec![("zone", "In", &["b", "c"]), ("gen", "Exists", &[])]),
        "n2"
    );
    assert_eq!(place(vec![("zone", "NotIn", &["a", "b"])]), "n3");
    assert_eq!(place(vec![("gen", "DoesNotExist", &[])]), "n3");
    assert_eq!(place(vec![("gen", "Gt", &["4"])]), "n2");
    assert_eq!(place(vec![("gen", "Lt", &["4"])]), "n1");
    assert_eq!(
        place(vec![("gen", "Gt", &["9"])]),
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );
    // Non-numeric Gt never matches.
    assert!(place(vec![("zone", "Gt", &["1"])]).starts_with("0/3"));
}

#[test]
fn tolerations_equal_exists_and_effects() {
    let tainted = vec![with_taint(
        node("a", "4", "8Gi", 110),
        "k",
        "v",
        "NoExecute",
    )];
    let try_tol = |tol: Toleration| {
        let mut s = Scheduler::new(&tainted, &[]);
        let mut p = pod("d", "p", "", "");
        p.spec.as_mut().unwrap().tolerations = Some(vec![tol]);
        matches!(s.schedule(&p), Decision::Bind { .. })
    };
    let t = |k: Option<&str>, op: Option<&str>, v: Option<&str>, e: Option<&str>| Toleration {
        key: k.map(Into::into),
        operator: op.map(Into::into),
        value: v.map(Into::into),
        effect: e.map(Into::into),
        toleration_seconds: None,
    };
    assert!(try_tol(t(
        Some("k"),
        Some("Equal"),
        Some("v"),
        Some("NoExecute")
    )));
    assert!(try_tol(t(Some("k"), None, Some("v"), None)));
    assert!(try_tol(t(Some("k"), Some("Exists"), None, None)));
    assert!(try_tol(t(None, Some("Exists"), None, None)));
    assert!(!try_tol(t(Some("k"), Some("Equal"), Some("w"), None)));
    assert!(!try_tol(t(
        Some("k"),
        Some("Equal"),
        Some("v"),
        Some("NoSchedule")
    )));
    assert!(!try_tol(t(Some("other"), Some("Exists"), None, None)));
    // PreferNoSchedule does not filter.
    let soft = vec![with_taint(
        node("a", "4", "8Gi", 110),
        "k",
        "v",
        "PreferNoSchedule",
    )];
    assert!(matches!(
        Scheduler::new(&soft, &[]).schedule(&pod("d", "p", "", "")),
        Decision::Bind { .. }
    ));
}

#[test]
fn spreads_one_owners_replicas_across_nodes() {
    let nodes: Vec<Node> = (0..3)
        .map(|i| node(&format!("n{i}"), "8", "16Gi", 110))
        .collect();
    // n0 already runs plenty of unrelated load but has room; spreading still wins for web.
    let mut s = Scheduler::new(&nodes, &[]);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..9 {
        let p = owned_by(
            pod("d", &format!("web-{i}"), "100m", "100Mi"),
            "ReplicaSet",
            "web",
            "rs-uid",
        );
        *per_node
            .entry(bind_node(&s.schedule(&p)).to_string())
            .or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![3, 3, 3]
    );
}

#[test]
fn least_allocated_prefers_emptier_node() {
    let nodes = vec![node("busy", "4", "8Gi", 110), node("idle", "4", "8Gi", 110)];
    let existing = bound(pod("d", "x", "3", "6Gi"), "busy");
    let mut s = Scheduler::new(&nodes, &[existing]);
    assert_eq!(
        bind_node(&s.schedule(&pod("d", "p", "100m", "100Mi"))),
        "idle"
    );
}

#[test]
fn no_nodes() {
    let mut s = Scheduler::new(&[], &[]);
    assert_eq!(
        unsched(&s.schedule(&pod("d", "p", "", ""))),
        "0/0 nodes are available: no nodes available to schedule pods."
    );
}
