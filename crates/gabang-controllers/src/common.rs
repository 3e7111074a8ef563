//! Helpers shared by the reconcilers: label selectors, quantities, pod state, owner references.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::chrono::{DateTime, Utc};

/// The `(namespace, name)` of an object, used as a work-queue key and in actions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn of(meta: &ObjectMeta) -> Self {
        ObjectKey {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Does a `LabelSelector` (matchLabels + matchExpressions) select these labels?
/// An empty selector selects everything, like Kubernetes' `LabelSelectorAsSelector`.
pub fn selector_matches(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    if let Some(ml) = &sel.match_labels {
        for (k, v) in ml {
            if labels.get(k) != Some(v) {
                return false;
            }
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or(&[]);
        let got = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => got.is_some_and(|g| values.contains(g)),
            "NotIn" => got.is_none_or(|g| !values.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Does a plain map selector (Service.spec.selector, nodeSelector) select these labels?
pub fn map_selector_matches(
    sel: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// CPU quantity in millicores ("500m", "2", "0.5"); `None` if unparsable.
pub fn cpu_millis(q: &Quantity) -> Option<i64> {
    let s = q.0.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse::<i64>().ok();
    }
    parse_decimal_scaled(s, 1000.0)
}

/// Memory/bytes quantity ("128Mi", "1G", "1e3", "512"); `None` if unparsable.
pub fn quantity_value(q: &Quantity) -> Option<i64> {
    let s = q.0.trim();
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("m", 1e-3),
    ];
    for (suf, mul) in SUFFIXES {
        if let Some(n) = s.strip_suffix(suf) {
            return parse_decimal_scaled(n, mul);
        }
    }
    parse_decimal_scaled(s, 1.0)
}

fn parse_decimal_scaled(s: &str, mul: f64) -> Option<i64> {
    let v: f64 = s.parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some((v * mul).ceil() as i64)
}

/// The controller owner reference of an object, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Is the pod terminated (Succeeded/Failed)?
pub fn pod_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Active pods count toward a ReplicaSet: not terminated and not being deleted.
pub fn pod_active(pod: &Pod) -> bool {
    !pod_terminated(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's Ready condition became True, if it is True.
pub fn pod_ready_since(pod: &Pod) -> Option<Option<DateTime<Utc>>> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod_ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (Kubernetes' IsPodAvailable).
pub fn pod_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    match pod_ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => {
            now - t >= k8s_openapi::chrono::Duration::seconds(min_ready_seconds as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert!(selector_matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "b")]))
        ));
        assert!(!selector_matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "c")]))
        ));
        assert!(!selector_matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "a"), ("canary", "1")]))
        ));
        assert!(!selector_matches(&sel, None));
        assert!(selector_matches(&LabelSelector::default(), None));
    }

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis(&Quantity("500m".into())), Some(500));
        assert_eq!(cpu_millis(&Quantity("2".into())), Some(2000));
        assert_eq!(cpu_millis(&Quantity("0.25".into())), Some(250));
        assert_eq!(quantity_value(&Quantity("128Mi".into())), Some(128 << 20));
        assert_eq!(quantity_value(&Quantity("1G".into())), Some(1_000_000_000));
        assert_eq!(quantity_value(&Quantity("110".into())), Some(110));
        assert_eq!(quantity_value(&Quantity("lots".into())), None);
        assert_eq!(cpu_millis(&Quantity("-1".into())), None);
    }
}
