//! Endpoints and EndpointSlices for Services with a selector.
//!
//! [`desired_endpoints`] and [`desired_endpoint_slices`] compute, from one Service and the pods
//! of its namespace, what the objects must contain: ready pods as addresses, not-ready ones as
//! notReadyAddresses (slices: `conditions.ready=false`), terminating pods left out of Endpoints
//! and marked `terminating` in slices. Each Service port's `targetPort` is resolved per pod
//! (a name is looked up among the pod's container ports), and pods are grouped by the port
//! set they resolve to, one subset / slice family per group. [`reconcile`] diffs that against
//! what exists and returns create/update/delete actions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use std::borrow::Borrow;

use crate::common::{map_selector_matches, pod_ready, pod_terminated, ObjectKey};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Endpoints objects used as leader-election locks (no Service behind them): never removed.
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// Endpoints per slice (Kubernetes' default `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// A change the controller asks the API server for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateEndpoints(Box<Endpoints>),
    UpdateEndpoints(Box<Endpoints>),
    DeleteEndpoints(ObjectKey),
    CreateSlice(Box<discovery::EndpointSlice>),
    UpdateSlice(Box<discovery::EndpointSlice>),
    DeleteSlice(ObjectKey),
}

/// One resolved port: (name, port, protocol).
type PortSet = Vec<(Option<String>, i32, String)>;

struct PodEndpoint<'a> {
    pod: &'a Pod,
    ip: String,
    ready: bool,
    terminating: bool,
}

/// Resolve the Service's ports for one pod (Kubernetes' `podutil.FindPort`): ports whose named
/// targetPort the pod does not declare are left out for that pod.
fn resolve_ports(svc: &Service, pod: &Pod) -> PortSet {
    let mut out = Vec::new();
    for sp in svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
    {
        let proto = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
        let port = match &sp.target_port {
            None => Some(sp.port),
            Some(IntOrString::Int(0)) => Some(sp.port),
            Some(IntOrString::Int(p)) => Some(*p),
            Some(IntOrString::String(name)) => match name.parse::<i32>() {
                Ok(p) => Some(p),
                Err(_) => pod.spec.as_ref().and_then(|s| {
                    s.containers
                        .iter()
                        .flat_map(|c| c.ports.iter().flatten())
                        .find_map(|cp| {
                            (cp.name.as_deref() == Some(name.as_str())
                                && cp.protocol.as_deref().unwrap_or("TCP") == proto)
                                .then_some(cp.container_port)
                        })
                }),
            },
        };
        if let Some(p) = port {
            out.push((sp.name.clone(), p, proto));
        }
    }
    out
}

fn selected_pods<'a, P: Borrow<Pod>>(svc: &Service, pods: &'a [P]) -> Option<Vec<PodEndpoint<'a>>> {
    let spec = svc.spec.as_ref()?;
    let sel = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut v: Vec<PodEndpoint<'a>> = pods
        .iter()
        .map(|p| p.borrow())
        .filter(|p| p.metadata.namespace == svc.metadata.namespace)
        .filter(|p| map_selector_matches(sel, p.metadata.labels.as_ref()))
        .filter(|p| !pod_terminated(p))
        .filter_map(|p| {
            let ip = p
                .status
                .as_ref()?
                .pod_ip
                .clone()
                .filter(|i| !i.is_empty())?;
            Some(PodEndpoint {
                pod: p,
                ip,
                ready: publish || pod_ready(p),
                terminating: p.metadata.deletion_timestamp.is_some(),
            })
        })
        .collect();
    v.sort_by(|a, b| {
        a.ip.cmp(&b.ip)
            .then(a.pod.metadata.name.cmp(&b.pod.metadata.name))
    });
    Some(v)
}

fn target_ref(p: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: p.metadata.namespace.clone(),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
        ..Default::default()
    }
}

fn group<'a, 'b>(
    svc: &Service,
    eps: &'b [PodEndpoint<'a>],
) -> BTreeMap<PortSet, Vec<&'b PodEndpoint<'a>>> {
    let mut groups: BTreeMap<PortSet, Vec<&PodEndpoint<'a>>> = BTreeMap::new();
    let has_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .is_some_and(|p| !p.is_empty());
    for e in eps {
        let ports = resolve_ports(svc, e.pod);
        // A pod none of whose ports resolve serves nothing (only port-less headless Services
        // list bare addresses).
        if ports.is_empty() && has_ports {
            continue;
        }
        groups.entry(ports).or_default().push(e);
    }
    groups
}

/// The Endpoints object the Service needs; `None` for a Service without selector (its
/// Endpoints are managed by hand).
pub fn desired_endpoints<P: Borrow<Pod>>(svc: &Service, pods: &[P]) -> Option<Endpoints> {
    let eps = selected_pods(svc, pods)?;
    let mut subsets = Vec::new();
    for (ports, members) in group(svc, &eps) {
        let addr = |e: &PodEndpoint<'_>| EndpointAddress {
            ip: e.ip.clone(),
            node_name: e.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(e.pod)),
            hostname: None,
        };
        let live: Vec<_> = members.iter().filter(|e| !e.terminating).collect();
        let ready: Vec<EndpointAddress> =
            live.iter().filter(|e| e.ready).map(|e| addr(e)).collect();
        let not_ready: Vec<EndpointAddress> =
            live.iter().filter(|e| !e.ready).map(|e| addr(e)).collect();
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        subsets.push(EndpointSubset {
            addresses: Some(ready).filter(|v| !v.is_empty()),
            not_ready_addresses: Some(not_ready).filter(|v| !v.is_empty()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, pr)| EndpointPort {
                        name: n.clone(),
                        port: *p,
                        protocol: Some(pr.clone()),
                        app_protocol: None,
                    })
                    .collect(),
            ),
        });
    }
    Some(Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: svc.metadata.labels.clone(),
            ..Default::default()
        },
        subsets: Some(subsets).filter(|s| !s.is_empty()),
    })
}

fn short_hash(ports: &PortSet) -> String {
    let mut h: u32 = 0x811c9dc5;
    for (n, p, pr) in ports {
        for b in n
            .as_deref()
            .unwrap_or("")
            .bytes()
            .chain(p.to_string().bytes())
            .chain(pr.bytes())
            .chain([0u8])
        {
            h ^= b as u32;
            h = h.wrapping_mul(0x01000193);
        }
    }
    format!("{h:08x}")[..5].to_string()
}

/// The EndpointSlices the Service needs (deterministic names `<svc>-<ports hash>-<n>`), owned by
/// the Service.
pub fn desired_endpoint_slices<P: Borrow<Pod>>(
    svc: &Service,
    pods: &[P],
) -> Option<Vec<discovery::EndpointSlice>> {
    let eps = selected_pods(svc, pods)?;
    let svc_name = svc.metadata.name.clone().unwrap_or_default();
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), svc_name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc_name.clone(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let mut out = Vec::new();
    for (ports, members) in group(svc, &eps) {
        let hash = short_hash(&ports);
        for (i, chunk) in members.chunks(MAX_ENDPOINTS_PER_SLICE).enumerate() {
            out.push(discovery::EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{svc_name}-{hash}-{i}")),
                    namespace: svc.metadata.namespace.clone(),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: chunk
                    .iter()
                    .map(|e| discovery::Endpoint {
                        addresses: vec![e.ip.clone()],
                        conditions: Some(discovery::EndpointConditions {
                            ready: Some(e.ready && !e.terminating),
                            serving: Some(e.ready),
                            terminating: Some(e.terminating),
                        }),
                        node_name: e.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                        target_ref: Some(target_ref(e.pod)),
                        ..Default::default()
                    })
                    .collect(),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, pr)| discovery::EndpointPort {
                            name: n.clone(),
                            port: Some(*p),
                            protocol: Some(pr.clone()),
                            app_protocol: None,
                        })
                        .collect(),
                ),
            });
        }
    }
    Some(out)
}

/// Diff desired Endpoints/EndpointSlices of `svc` against the existing ones of the namespace.
pub fn reconcile<P: Borrow<Pod>>(
    svc: &Service,
    pods: &[P],
    existing: Option<&Endpoints>,
    slices: &[discovery::EndpointSlice],
) -> Vec<Action> {
    let mut actions = Vec::new();
    let (Some(want_ep), Some(want_slices)) = (
        desired_endpoints(svc, pods),
        desired_endpoint_slices(svc, pods),
    ) else {
        return actions;
    };
    match existing {
        None => actions.push(Action::CreateEndpoints(Box::new(want_ep))),
        Some(e) if e.subsets != want_ep.subsets || e.metadata.labels != want_ep.metadata.labels => {
            let mut upd = e.clone();
            upd.subsets = want_ep.subsets;
            upd.metadata.labels = want_ep.metadata.labels;
            actions.push(Action::UpdateEndpoints(Box::new(upd)));
        }
        Some(_) => {}
    }
    let ours: Vec<&discovery::EndpointSlice> = slices
        .iter()
        .filter(|s| s.metadata.namespace == svc.metadata.namespace)
        .filter(|s| {
            let l = s.metadata.labels.as_ref();
            l.and_then(|l| l.get(SERVICE_NAME_LABEL)) == svc.metadata.name.as_ref()
                && l.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(MANAGED_BY)
        })
        .collect();
    for want in &want_slices {
        match ours.iter().find(|s| s.metadata.name == want.metadata.name) {
            None => actions.push(Action::CreateSlice(Box::new(want.clone()))),
            Some(have)
                if have.endpoints != want.endpoints
                    || have.ports != want.ports
                    || have.metadata.labels != want.metadata.labels =>
            {
                let mut upd = (*have).clone();
                upd.endpoints = want.endpoints.clone();
                upd.ports = want.ports.clone();
                upd.metadata.labels = want.metadata.labels.clone();
                actions.push(Action::UpdateSlice(Box::new(upd)));
            }
            Some(_) => {}
        }
    }
    for have in ours {
        if !want_slices
            .iter()
            .any(|w| w.metadata.name == have.metadata.name)
        {
            actions.push(Action::DeleteSlice(ObjectKey::of(&have.metadata)));
        }
    }
    actions
}

/// The Service `namespace/name` is gone: its Endpoints (same name) and the EndpointSlices we
/// manage for it go too (Kubernetes' endpoints controller deletes them when the Service goes).
pub fn for_deleted_service(
    namespace: &str,
    name: &str,
    existing: Option<&Endpoints>,
    slices: &[discovery::EndpointSlice],
) -> Vec<Action> {
    let mut actions = Vec::new();
    if let Some(e) = existing {
        let lock = e
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
        if !lock && e.metadata.deletion_timestamp.is_none() {
            actions.push(Action::DeleteEndpoints(ObjectKey::of(&e.metadata)));
        }
    }
    for sl in slices {
        let l = sl.metadata.labels.as_ref();
        if sl.metadata.namespace.as_deref() == Some(namespace)
            && sl.metadata.deletion_timestamp.is_none()
            && l.and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                == Some(name)
            && l.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(MANAGED_BY)
        {
            actions.push(Action::DeleteSlice(ObjectKey::of(&sl.metadata)));
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use k8s_openapi::api::core::v1::{ContainerPort, ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::chrono::{TimeZone, Utc};

    fn svc(target: IntOrString) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some("web".into()),
                uid: Some("svc-uid".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(labels(&[("app", "web")])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(target),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn web_pod(name: &str, ip: &str, ready: bool, http_port: Option<i32>) -> Pod {
        let mut p = bound(pod("ns", name, "", ""), "n1");
        p.metadata.labels = Some(labels(&[("app", "web")]));
        if let Some(port) = http_port {
            p.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: port,
                ..Default::default()
            }]);
        }
        if ready {
            p = running_ready(p, Utc.timestamp_opt(0, 0).unwrap());
        }
        p.status.as_mut().unwrap().pod_ip = Some(ip.into());
        p
    }

    #[test]
    fn ready_and_not_ready_with_named_ports_grouped() {
        let s = svc(IntOrString::String("http".into()));
        let mut other = web_pod("other", "10.0.0.9", true, None);
        other.metadata.labels = Some(labels(&[("app", "db")]));
        let mut dying = web_pod("dying", "10.0.0.5", true, Some(8080));
        dying.metadata.deletion_timestamp = Some(Time(Utc.timestamp_opt(0, 0).unwrap()));
        let no_ip = {
            let mut p = web_pod("noip", "", true, Some(8080));
            p.status.as_mut().unwrap().pod_ip = None;
            p
        };
        let pods = vec![
            web_pod("b", "10.0.0.2", true, Some(8080)),
            web_pod("a", "10.0.0.1", false, Some(8080)),
            web_pod("c", "10.0.0.3", true, Some(9090)),
            web_pod("noport", "10.0.0.4", true, None),
            other,
            dying,
            no_ip,
        ];
        let ep = desired_endpoints(&s, &pods).unwrap();
        let subsets = ep.subsets.unwrap();
        let summary: Vec<(i32, Vec<String>, Vec<String>)> = subsets
            .iter()
            .map(|s| {
                (
                    s.ports.as_ref().unwrap()[0].port,
                    s.addresses.iter().flatten().map(|a| a.ip.clone()).collect(),
                    s.not_ready_addresses
                        .iter()
                        .flatten()
                        .map(|a| a.ip.clone())
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    8080,
                    vec!["10.0.0.2".to_string()],
                    vec!["10.0.0.1".to_string()]
                ),
                (9090, vec!["10.0.0.3".to_string()], vec![]),
            ]
        );
        let addr = &subsets
            .iter()
            .find(|s| s.addresses.is_some())
            .unwrap()
            .addresses
            .as_ref()
            .unwrap()[0];
        assert_eq!(addr.target_ref.as_ref().unwrap().name.as_deref(), Some("b"));
        assert_eq!(addr.node_name.as_deref(), Some("n1"));

        let slices = desired_endpoint_slices(&s, &pods).unwrap();
        let with_8080 = slices
            .iter()
            .find(|s| s.ports.as_ref().unwrap().first().and_then(|p| p.port) == Some(8080))
            .unwrap();
        let conds: Vec<(String, bool, bool)> = with_8080
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.as_ref().unwrap();
                (
                    e.addresses[0].clone(),
                    c.ready.unwrap(),
                    c.terminating.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            conds,
            vec![
                ("10.0.0.1".into(), false, false),
                ("10.0.0.2".into(), true, false),
                ("10.0.0.5".into(), false, true)
            ]
        );
        assert_eq!(
            with_8080
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .get(SERVICE_NAME_LABEL)
                .map(String::as_str),
            Some("web")
        );
        assert_eq!(
            with_8080.metadata.owner_references.as_ref().unwrap()[0].uid,
            "svc-uid"
        );
    }

    #[test]
    fn numeric_target_port_and_no_selector() {
        let s = svc(IntOrString::Int(8443));
        let ep = desired_endpoints(&s, &[web_pod("a", "10.0.0.1", true, None)]).unwrap();
        assert_eq!(ep.subsets.unwrap()[0].ports.as_ref().unwrap()[0].port, 8443);
        let mut manual = s.clone();
        manual.spec.as_mut().unwrap().selector = None;
        assert!(desired_endpoints::<Pod>(&manual, &[]).is_none());
        assert!(reconcile::<Pod>(&manual, &[], None, &[]).is_empty());
    }

    #[test]
    fn reconcile_is_idempotent_and_tracks_changes() {
        let s = svc(IntOrString::String("http".into()));
        let mut pods = vec![web_pod("a", "10.0.0.1", true, Some(8080))];
        let first = reconcile(&s, &pods, None, &[]);
        assert_eq!(first.len(), 2);
        let (Action::CreateEndpoints(ep), Action::CreateSlice(sl)) = (&first[0], &first[1]) else {
            panic!("{first:?}")
        };
        let (ep, mut slices) = ((**ep).clone(), vec![(**sl).clone()]);
        assert!(reconcile(&s, &pods, Some(&ep), &slices).is_empty());
        // A pod becomes not ready: both are updated.
        pods[0] = web_pod("a", "10.0.0.1", false, Some(8080));
        let upd = reconcile(&s, &pods, Some(&ep), &slices);
        assert!(
            matches!(upd[0], Action::UpdateEndpoints(_))
                && matches!(upd[1], Action::UpdateSlice(_)),
            "{upd:?}"
        );
        // The port changes: the old slice goes, a new one comes.
        pods[0] = web_pod("a", "10.0.0.1", true, Some(9000));
        let ch = reconcile(&s, &pods, Some(&ep), &slices);
        assert!(ch.iter().any(|a| matches!(a, Action::CreateSlice(_))));
        assert!(ch.iter().any(|a| matches!(a, Action::DeleteSlice(k) if Some(&k.name) == slices[0].metadata.name.as_ref())));
        // Slices of other services are not touched.
        slices[0]
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(SERVICE_NAME_LABEL.into(), "other".into());
        let ch = reconcile(&s, &pods, Some(&ep), &slices);
        assert!(!ch.iter().any(|a| matches!(a, Action::DeleteSlice(_))));
    }

    #[test]
    fn large_services_split_into_slices_of_100() {
        let s = svc(IntOrString::Int(80));
        let pods: Vec<Pod> = (0..250)
            .map(|i| {
                web_pod(
                    &format!("p{i}"),
                    &format!("10.1.{}.{}", i / 200, i % 200),
                    true,
                    None,
                )
            })
            .collect();
        let slices = desired_endpoint_slices(&s, &pods).unwrap();
        assert_eq!(
            slices.iter().map(|s| s.endpoints.len()).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
    }

    #[test]
    fn deleted_service_takes_its_endpoints_and_slices() {
        let s = svc(IntOrString::Int(8080));
        let pods = vec![web_pod("a", "10.0.0.1", true, None)];
        let mut ep = None;
        let mut slices = Vec::new();
        for a in reconcile(&s, &pods, None, &[]) {
            match a {
                Action::CreateEndpoints(e) => ep = Some(*e),
                Action::CreateSlice(sl) => slices.push(*sl),
                other => panic!("unexpected {other:?}"),
            }
        }
        let ep = ep.unwrap();
        let mut foreign = slices[0].clone();
        foreign.metadata.name = Some("by-someone-else".into());
        foreign
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(MANAGED_BY_LABEL.into(), "other-controller".into());
        let mut of_other = slices[0].clone();
        of_other.metadata.name = Some("other-svc-abc".into());
        of_other
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(SERVICE_NAME_LABEL.into(), "other".into());
        slices.push(foreign);
        slices.push(of_other);
        let got = for_deleted_service("ns", "web", Some(&ep), &slices);
        assert_eq!(
            got,
            vec![
                Action::DeleteEndpoints(ObjectKey::of(&ep.metadata)),
                Action::DeleteSlice(ObjectKey::of(&slices[0].metadata)),
            ]
        );
        // A leader-election lock of the same name stays.
        let mut lock = ep.clone();
        lock.metadata.annotations = Some(labels(&[(LEADER_ANNOTATION, "{}")]));
        assert_eq!(
            for_deleted_service("ns", "web", Some(&lock), &[]),
            Vec::<Action>::new()
        );
    }
}
