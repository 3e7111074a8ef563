//! Which runtime container a `/containerLogs` or `/exec` request means, found by the labels the
//! agent puts on its containers: pod namespace + name, container name, and the attempt (restart
//! count) — the current attempt is the highest, `previous` the one before it.

use gabang_runtime::{ContainerSummary, Runtime};

use super::HttpError;
use crate::labels;

/// The pod and (optional) container named by the URL.
pub(crate) struct Target {
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
}

impl Target {
    pub(crate) fn new(ns: &str, pod: &str, container: Option<&str>) -> Self {
        Self {
            namespace: ns.to_string(),
            pod: pod.to_string(),
            container: container.filter(|c| !c.is_empty()).map(String::from),
        }
    }
}

fn label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.get(key).map(String::as_str)
}

fn attempt(c: &ContainerSummary) -> u64 {
    label(c, labels::ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// The container's current attempt, or with `previous` the attempt before it.
pub(crate) fn find(
    rt: &Runtime,
    t: &Target,
    previous: bool,
) -> Result<ContainerSummary, HttpError> {
    let all = rt
        .list(true)
        .map_err(|e| HttpError::internal(format!("listing containers: {e}")))?;
    let mut mine: Vec<ContainerSummary> = all
        .into_iter()
        .filter(|c| {
            label(c, labels::POD_NAMESPACE) == Some(t.namespace.as_str())
                && label(c, labels::POD_NAME) == Some(t.pod.as_str())
        })
        .collect();
    // A pod deleted and made again under the same name: only the newest pod's containers
    // (the list is newest first).
    if let Some(uid) = mine
        .first()
        .and_then(|c| label(c, labels::POD_UID))
        .map(String::from)
    {
        mine.retain(|c| label(c, labels::POD_UID) == Some(uid.as_str()));
    }
    if mine.is_empty() {
        return Err(HttpError::not_found(format!(
            "pod \"{}\" in namespace \"{}\" has no containers on this node",
            t.pod, t.namespace
        )));
    }
    let mut names: Vec<String> = mine
        .iter()
        .filter_map(|c| label(c, labels::CONTAINER_NAME))
        .map(String::from)
        .collect();
    names.sort_unstable();
    names.dedup();
    let name = match &t.container {
        Some(c) => c.clone(),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(HttpError::bad_request(format!(
                "a container name must be specified for pod {}, choose one of: [{}]",
                t.pod,
                names.join(" ")
            )))
        }
    };
    let mut attempts: Vec<ContainerSummary> = mine
        .into_iter()
        .filter(|c| label(c, labels::CONTAINER_NAME) == Some(name.as_str()))
        .collect();
    if attempts.is_empty() {
        return Err(HttpError::not_found(format!(
            "container \"{name}\" in pod \"{}\" not found; the pod's containers here: [{}]",
            t.pod,
            names.join(" ")
        )));
    }
    attempts.sort_by_key(|c| (attempt(c), c.created));
    let pick = if previous {
        attempts.len().checked_sub(2)
    } else {
        attempts.len().checked_sub(1)
    };
    match pick {
        Some(i) => Ok(attempts.swap_remove(i)),
        None => Err(HttpError::bad_request(format!(
            "previous terminated container \"{name}\" in pod \"{}\" not found",
            t.pod
        ))),
    }
}
