//! The pod-level cgroup `/gabang/pods/<uid>` (the parent of its containers' cgroups): the
//! pod's memory and CPU limits (the kubelet's: the sum of the app containers' limits, at
//! least the largest init container's; none when a container has no limit), written before
//! the first container is made, on v1 controllers (hybrid hosts) or v2.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::podspec::{quantity_bytes, quantity_cores};

/// The pod's limits: (memory bytes, cpu cores); `None` = unlimited.
pub(super) fn pod_limits(pod: &Pod) -> (Option<i64>, Option<f64>) {
    let Some(spec) = pod.spec.as_ref() else {
        return (None, None);
    };
    let limit = |c: &Container, res: &str| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(res))
            .cloned()
    };
    let mem = |c: &Container| limit(c, "memory").and_then(|q| quantity_bytes(&q, "memory").ok());
    let cpu = |c: &Container| limit(c, "cpu").and_then(|q| quantity_cores(&q, "cpu").ok());
    // Overflowing limits (two containers at 5Ei) mean no pod limit, never a panic.
    let sum_mem: Option<i64> = spec
        .containers
        .iter()
        .map(mem)
        .try_fold(0i64, |acc, m| m.and_then(|m| acc.checked_add(m)));
    let sum_cpu: Option<f64> = spec.containers.iter().map(cpu).sum();
    let inits = spec.init_containers.as_deref().unwrap_or(&[]);
    let max_init_mem = inits.iter().map(mem).collect::<Option<Vec<_>>>();
    let max_init_cpu = inits.iter().map(cpu).collect::<Option<Vec<_>>>();
    let memory = match (sum_mem, max_init_mem) {
        (Some(s), Some(i)) => Some(i.into_iter().fold(s, i64::max)),
        _ => None,
    };
    let cpus = match (sum_cpu, max_init_cpu) {
        (Some(s), Some(i)) => Some(i.into_iter().fold(s, f64::max)),
        _ => None,
    };
    (memory, cpus)
}

fn write(path: &Path, value: &str) {
    if let Err(e) = std::fs::write(path, value) {
        tracing::warn!("cgroup {}: write {value:?}: {e}", path.display());
    }
}

/// Make the pod cgroup with its limits (best effort: a host without a controller runs the
/// pod with the containers' own limits only). Idempotent.
pub(super) fn ensure(rel: &str, pod: &Pod) {
    let (memory, cpus) = pod_limits(pod);
    let rel = rel.trim_start_matches('/');
    let base = Path::new("/sys/fs/cgroup");
    let v1_memory = base.join("memory");
    if v1_memory.join("memory.limit_in_bytes").exists() {
        let dir = v1_memory.join(rel);
        if std::fs::create_dir_all(&dir).is_ok() {
            if let Some(m) = memory {
                write(&dir.join("memory.limit_in_bytes"), &m.to_string());
            }
        }
        let cpu = ["cpu,cpuacct", "cpu"]
            .iter()
            .map(|c| base.join(c))
            .find(|d| d.join("cpu.cfs_quota_us").exists());
        if let (Some(cpu), Some(c)) = (cpu, cpus) {
            let dir = cpu.join(rel);
            if std::fs::create_dir_all(&dir).is_ok() {
                write(&dir.join("cpu.cfs_period_us"), "100000");
                write(&dir.join("cpu.cfs_quota_us"), &quota(c).to_string());
            }
        }
    } else if base.join("cgroup.controllers").exists() {
        // Pure v2: enable the controllers down to the pod's dir, then set its limits.
        let mut dir: PathBuf = base.to_owned();
        for part in rel.split('/') {
            write(&dir.join("cgroup.subtree_control"), "+memory +cpu");
            dir.push(part);
            let _ = std::fs::create_dir(&dir);
        }
        if let Some(m) = memory {
            write(&dir.join("memory.max"), &m.to_string());
        }
        if let Some(c) = cpus {
            write(&dir.join("cpu.max"), &format!("{} 100000", quota(c)));
        }
    }
}

fn quota(cores: f64) -> i64 {
    ((cores * 100_000.0).round() as i64).max(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": v})).unwrap()
    }

    #[test]
    fn pod_limits_are_the_sum_of_containers_at_least_the_largest_init() {
        let p = pod(serde_json::json!({
            "initContainers": [{"name": "i", "resources": {"limits": {"memory": "100Mi", "cpu": "2"}}}],
            "containers": [
                {"name": "a", "resources": {"limits": {"memory": "32Mi", "cpu": "500m"}}},
                {"name": "b", "resources": {"limits": {"memory": "16Mi", "cpu": "250m"}}}]}));
        assert_eq!(pod_limits(&p), (Some(100 << 20), Some(2.0)));
        let p = pod(serde_json::json!({"containers": [
                {"name": "a", "resources": {"limits": {"memory": "32Mi", "cpu": "500m"}}},
                {"name": "b", "resources": {"limits": {"memory": "16Mi", "cpu": "250m"}}}]}));
        assert_eq!(pod_limits(&p), (Some(48 << 20), Some(0.75)));
        let p = pod(serde_json::json!({"containers": [
                {"name": "a", "resources": {"limits": {"memory": "32Mi"}}},
                {"name": "b"}]}));
        assert_eq!(pod_limits(&p), (None, None));
    }
}
