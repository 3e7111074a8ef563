//! Node lifecycle: Lease heartbeats → Ready / NotReady, the unreachable taint, and eviction.
//!
//! Each node renews the Lease `kube-node-lease/<node>`. [`reconcile`] compares the newest
//! heartbeat (lease `renewTime`, or the node's creation for a node that never renewed) with
//! the clock: past the grace period (default 40 s) the node's Ready condition becomes
//! `Unknown` (reason `NodeStatusUnknown`), it gets the `node.kubernetes.io/unreachable:NoExecute`
//! taint, and its pods are evicted (deleted, so their ReplicaSets create replacements that the
//! scheduler places elsewhere) — at once, or after `tolerationSeconds` for pods that tolerate the
//! taint for a while; pods tolerating it forever stay. When the lease is fresh again the taint
//! goes and Ready returns to True. The clock is a [`Clock`] so tests move time by hand.

use std::borrow::Borrow;
use std::sync::Mutex;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Duration, Utc};

use crate::common::{pod_terminated, ObjectKey};
use crate::scheduler::tolerates;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const DEFAULT_GRACE_SECONDS: i64 = 40;

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct FakeClock(Mutex<DateTime<Utc>>);

impl FakeClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        FakeClock(Mutex::new(at))
    }
    pub fn advance(&self, d: Duration) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *g += d;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// How old a lease may get before the node is NotReady (`--node-monitor-grace-period`).
    pub grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grace: Duration::seconds(DEFAULT_GRACE_SECONDS),
        }
    }
}

impl Config {
    /// The default config with this grace period.
    pub fn with_grace(grace: Duration) -> Self {
        Config { grace }
    }
}

/// A `--node-monitor-grace-period` that is not a positive duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {why} (expected seconds or a duration like 40s, 1m30s, 500ms)"
)]
pub struct DurationError {
    pub input: String,
    pub why: &'static str,
}

/// A duration as kube-controller-manager takes it (Go's `time.ParseDuration`: `40s`, `1m30s`,
/// `1.5m`, `500ms`, `2h`; units ns, us/µs, ms, s, m, h), or a bare number of seconds (`40`).
/// Must be positive.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let total_ns: f64 = if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        s.parse::<f64>().map_err(|_| err("not a number"))? * 1e9
    } else {
        let mut rest = s;
        let mut total = 0.0;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if num_len == 0 {
                return Err(err("a unit without a number"));
            }
            let n: f64 = rest[..num_len].parse().map_err(|_| err("not a number"))?;
            rest = &rest[num_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_len] {
                "ns" => 1.0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                "" => return Err(err("missing unit")),
                _ => return Err(err("unknown unit")),
            };
            total += n * scale;
            rest = &rest[unit_len..];
        }
        total
    };
    if !total_ns.is_finite() || total_ns >= i64::MAX as f64 {
        return Err(err("too large"));
    }
    let d = Duration::nanoseconds(total_ns.round() as i64);
    if d <= Duration::zero() {
        return Err(err("must be positive"));
    }
    Ok(d)
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeAction {
    /// Replace the node's `status.conditions`.
    SetConditions {
        node: String,
        conditions: Vec<NodeCondition>,
    },
    /// Replace the node's `spec.taints`.
    SetTaints { node: String, taints: Vec<Taint> },
    /// Delete the pod (eviction); `reason` is for the event.
    EvictPod {
        pod: ObjectKey,
        node: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub actions: Vec<NodeAction>,
    /// When to look again at the latest (a lease would expire or a toleration run out).
    pub next_check: Option<DateTime<Utc>>,
}

fn unreachable_taint(now: DateTime<Utc>) -> Taint {
    Taint {
        key: UNREACHABLE_TAINT.into(),
        value: None,
        effect: "NoExecute".into(),
        time_added: Some(Time(now)),
    }
}

/// One pass over all nodes at `now`.
pub fn reconcile<P: Borrow<Pod>>(
    nodes: &[Node],
    leases: &[Lease],
    pods: &[P],
    cfg: &Config,
    now: DateTime<Utc>,
) -> Outcome {
    let mut out = Outcome::default();
    let next = |t: DateTime<Utc>, out: &mut Outcome| {
        if t > now && out.next_check.is_none_or(|n| t < n) {
            out.next_check = Some(t);
        }
    };
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let renew = leases
            .iter()
            .find(|l| {
                l.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE)
                    && l.metadata.name.as_deref() == Some(name.as_str())
            })
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let Some(heartbeat) = renew.into_iter().chain(created).max() else {
            continue;
        };
        let expires = heartbeat + cfg.grace;
        let expired = now > expires;
        let conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let ready = conditions.iter().find(|c| c.type_ == "Ready");
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let existing_taint = taints
            .iter()
            .find(|t| t.key == UNREACHABLE_TAINT && t.effect == "NoExecute");
        if expired {
            if ready.map(|c| c.status.as_str()) != Some("Unknown") {
                let mut conds: Vec<NodeCondition> = conditions
                    .iter()
                    .filter(|c| c.type_ != "Ready")
                    .cloned()
                    .collect();
                conds.push(NodeCondition {
                    type_: "Ready".into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusUnknown".into()),
                    message: Some("Kubelet stopped posting node status.".into()),
                    last_transition_time: Some(Time(now)),
                    last_heartbeat_time: ready.and_then(|c| c.last_heartbeat_time.clone()),
                });
                out.actions.push(NodeAction::SetConditions {
                    node: name.clone(),
                    conditions: conds,
                });
            }
            let taint = match existing_taint {
                Some(t) => t.clone(),
                None => {
                    let t = unreachable_taint(now);
                    let mut ts: Vec<Taint> = taints
                        .iter()
                        .filter(|t| t.key != NOT_READY_TAINT)
                        .cloned()
                        .collect();
                    ts.push(t.clone());
                    out.actions.push(NodeAction::SetTaints {
                        node: name.clone(),
                        taints: ts,
                    });
                    t
                }
            };
            let tainted_at = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
            for p in pods {
                let p: &Pod = p.borrow();
                let Some(spec) = p.spec.as_ref() else {
                    continue;
                };
                if spec.node_name.as_deref() != Some(name.as_str())
                    || pod_terminated(p)
                    || p.metadata.deletion_timestamp.is_some()
                {
                    continue;
                }
                let tols: Vec<_> = spec
                    .tolerations
                    .iter()
                    .flatten()
                    .filter(|t| tolerates(t, &taint))
                    .collect();
                // Tolerated forever by any matching toleration without seconds; else the shortest.
                let evict_at = if tols.is_empty() {
                    Some(tainted_at)
                } else if tols.iter().any(|t| t.toleration_seconds.is_none()) {
                    None
                } else {
                    tols.iter()
                        .filter_map(|t| t.toleration_seconds)
                        .min()
                        .map(|s| tainted_at + Duration::seconds(s.max(0)))
                };
                match evict_at {
                    Some(at) if at <= now => out.actions.push(NodeAction::EvictPod {
                        pod: ObjectKey::of(&p.metadata),
                        node: name.clone(),
                        reason: format!(
                            "Node {name} is unreachable: taint {UNREACHABLE_TAINT}:NoExecute"
                        ),
                    }),
                    Some(at) => next(at, &mut out),
                    None => {}
                }
            }
        } else {
            next(expires + Duration::milliseconds(1), &mut out);
            if existing_taint.is_some() {
                let ts = taints
                    .iter()
                    .filter(|t| t.key != UNREACHABLE_TAINT)
                    .cloned()
                    .collect();
                out.actions.push(NodeAction::SetTaints {
                    node: name.clone(),
                    taints: ts,
                });
            }
            if let Some(c) = ready.filter(|c| {
                c.status == "Unknown" && c.reason.as_deref() == Some("NodeStatusUnknown")
            }) {
                let mut conds: Vec<NodeCondition> = conditions
                    .iter()
                    .filter(|c| c.type_ != "Ready")
                    .cloned()
                    .collect();
                conds.push(NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    reason: Some("LeaseRenewed".into()),
                    message: Some("node lease renewed".into()),
                    last_transition_time: Some(Time(now)),
                    last_heartbeat_time: renew.map(Time).or_else(|| c.last_heartbeat_time.clone()),
                });
                out.actions.push(NodeAction::SetConditions {
                    node: name.clone(),
                    conditions: conds,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::Toleration;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    use k8s_openapi::chrono::TimeZone;

    #[test]
    fn grace_period_parses_like_kube_controller_manager() {
        let secs = |s: &str| parse_duration(s).map(|d| d.num_milliseconds());
        assert_eq!(secs("40"), Ok(40_000));
        assert_eq!(secs("40s"), Ok(40_000));
        assert_eq!(secs("1m30s"), Ok(90_000));
        assert_eq!(secs("1.5m"), Ok(90_000));
        assert_eq!(secs("500ms"), Ok(500));
        assert_eq!(secs("2h"), Ok(7_200_000));
        assert_eq!(secs(" 5s "), Ok(5_000));
        for bad in ["", "s", "40x", "0", "0s", "-5s", "1m-3s", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Config::with_grace(Duration::seconds(5)).grace,
            Duration::seconds(5)
        );
    }

    fn lease(node: &str, at: DateTime<Utc>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                namespace: Some(LEASE_NAMESPACE.into()),
                name: Some(node.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node.into()),
                renew_time: Some(MicroTime(at)),
                lease_duration_seconds: Some(40),
                ..Default::default()
            }),
        }
    }

    fn n(name: &str, created: DateTime<Utc>) -> Node {
        let mut n = node(name, "4", "8Gi", 110);
        n.metadata.creation_timestamp = Some(Time(created));
        n
    }

    /// Apply node actions to the node list, return evicted pod names.
    fn apply(nodes: &mut [Node], pods: &mut Vec<Pod>, actions: &[NodeAction]) -> Vec<String> {
        let mut evicted = Vec::new();
        for a in actions {
            match a {
                NodeAction::SetConditions { node, conditions } => {
                    let n = nodes
                        .iter_mut()
                        .find(|n| n.metadata.name.as_ref() == Some(node))
                        .unwrap();
                    n.status.as_mut().unwrap().conditions = Some(conditions.clone());
                }
                NodeAction::SetTaints { node, taints } => {
                    let n = nodes
                        .iter_mut()
                        .find(|n| n.metadata.name.as_ref() == Some(node))
                        .unwrap();
                    n.spec.as_mut().unwrap().taints = Some(taints.clone());
                }
                NodeAction::EvictPod { pod, .. } => {
                    pods.retain(|p| ObjectKey::of(&p.metadata) != *pod);
                    evicted.push(pod.name.clone());
                }
            }
        }
        evicted
    }

    fn ready_status(n: &Node) -> String {
        n.status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .status
            .clone()
    }

    fn tolerate(p: Pod, secs: Option<i64>) -> Pod {
        let mut p = p;
        p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some(UNREACHABLE_TAINT.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        }]);
        p
    }

    #[test]
    fn lost_node_goes_not_ready_tainted_and_evicted_then_recovers() {
        let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let clock = FakeClock::new(t0);
        let cfg = Config::default();
        let mut nodes = vec![n("a", t0), n("b", t0)];
        let mut pods = vec![
            bound(pod("ns", "on-a", "", ""), "a"),
            bound(pod("ns", "on-b", "", ""), "b"),
            tolerate(bound(pod("ns", "tolerates-30s", "", ""), "a"), Some(30)),
            tolerate(bound(pod("ns", "tolerates-forever", "", ""), "a"), None),
        ];
        let mut done = bound(pod("ns", "done", "", ""), "a");
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        pods.push(done);
        // Both renew at t0+30; at t0+60 both are fresh.
        let leases = vec![
            lease("a", t0 + Duration::seconds(30)),
            lease("b", t0 + Duration::seconds(30)),
        ];
        clock.advance(Duration::seconds(60));
        let o = reconcile(&nodes, &leases, &pods, &cfg, clock.now());
        assert!(o.actions.is_empty());
        assert_eq!(
            o.next_check,
            Some(t0 + Duration::seconds(70) + Duration::milliseconds(1))
        );
        // b keeps renewing, a stops. At t0+71 a's lease (t0+30) is 41 s old.
        let leases = vec![
            lease("a", t0 + Duration::seconds(30)),
            lease("b", t0 + Duration::seconds(70)),
        ];
        clock.advance(Duration::seconds(11));
        let o = reconcile(&nodes, &leases, &pods, &cfg, clock.now());
        let evicted = apply(&mut nodes, &mut pods, &o.actions);
        assert_eq!(evicted, vec!["on-a"]);
        assert_eq!(ready_status(&nodes[0]), "Unknown");
        assert_eq!(ready_status(&nodes[1]), "True");
        let taints = nodes[0].spec.as_ref().unwrap().taints.clone().unwrap();
        assert_eq!(
            (taints[0].key.as_str(), taints[0].effect.as_str()),
            (UNREACHABLE_TAINT, "NoExecute")
        );
        // Idempotent: same time, nothing more.
        assert!(reconcile(&nodes, &leases, &pods, &cfg, clock.now())
            .actions
            .is_empty());
        // The 30 s toleration runs out.
        clock.advance(Duration::seconds(30));
        let o = reconcile(&nodes, &leases, &pods, &cfg, clock.now());
        assert_eq!(
            apply(&mut nodes, &mut pods, &o.actions),
            vec!["tolerates-30s"]
        );
        let left: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(left, vec!["on-b", "tolerates-forever", "done"]);
        // a comes back.
        let leases = vec![lease("a", clock.now()), lease("b", clock.now())];
        let o = reconcile(&nodes, &leases, &pods, &cfg, clock.now());
        apply(&mut nodes, &mut pods, &o.actions);
        assert_eq!(ready_status(&nodes[0]), "True");
        assert!(nodes[0]
            .spec
            .as_ref()
            .unwrap()
            .taints
            .as_ref()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn grace_is_configurable_and_new_nodes_get_it_too() {
        let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let cfg = Config {
            grace: Duration::seconds(5),
        };
        let nodes = vec![n("fresh", t0)];
        assert!(
            reconcile::<Pod>(&nodes, &[], &[], &cfg, t0 + Duration::seconds(5))
                .actions
                .is_empty()
        );
        let o = reconcile::<Pod>(&nodes, &[], &[], &cfg, t0 + Duration::seconds(6));
        assert_eq!(o.actions.len(), 2, "{:?}", o.actions);
        let o = reconcile::<Pod>(
            &nodes,
            &[],
            &[],
            &Config::default(),
            t0 + Duration::seconds(6),
        );
        assert!(o.actions.is_empty());
    }
}
