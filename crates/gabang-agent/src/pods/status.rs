//! The pod status kubectl shows, from the containers on disk and what the step decided:
//! phase (the kubelet's rules), conditions, container and init container statuses (state,
//! lastState, restartCount, ready, started), pod/host IPs, startTime, qosClass.

use std::collections::HashMap;

use chrono::Utc;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::containers::{Attempts, Observed};
use super::sandbox::Sandbox;
use super::sync::{InitProgress, View};
use super::RestartPolicy;

pub(super) struct Inputs<'a> {
    pub pod: &'a Pod,
    /// `None` while the sandbox cannot be made.
    pub sb: Option<&'a Sandbox>,
    pub attempts: &'a Attempts,
    pub views: &'a HashMap<String, View>,
    pub init: InitProgress,
    pub host_ip: &'a str,
}

fn terminated(o: &Observed) -> ContainerState {
    let code = o.state.exit_code.unwrap_or(255);
    let reason = if o.state.oom_killed {
        "OOMKilled"
    } else if o.state.error.is_some() {
        "StartError"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(reason.into()),
            message: o.state.error.clone(),
            started_at: o.state.started_at.map(Time),
            finished_at: o.state.finished_at.map(Time),
            container_id: Some(container_id(o)),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

fn container_id(o: &Observed) -> String {
    format!("gabang://{}", o.id)
}

/// One container's status. `blocked` = an app container while init containers run.
fn container_status(
    c: &Container,
    all: &[Observed],
    view: Option<&View>,
    init: bool,
    blocked: bool,
) -> ContainerStatus {
    let latest = all.last();
    let prev = all.len().checked_sub(2).and_then(|i| all.get(i));
    let wait = view.and_then(|v| v.waiting.clone());
    let (state, last) = match (wait, latest) {
        (Some(w), Some(l)) if l.exit_code().is_some() => {
            (waiting(&w.reason, Some(w.message)), Some(terminated(l)))
        }
        (Some(w), _) => (waiting(&w.reason, Some(w.message)), prev.map(terminated)),
        (None, Some(l)) if l.running() => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: l.state.started_at.map(Time),
                }),
                ..Default::default()
            },
            prev.map(terminated),
        ),
        (None, Some(l)) if l.exit_code().is_some() => (terminated(l), prev.map(terminated)),
        (None, Some(_)) => (waiting("ContainerCreating", None), prev.map(terminated)),
        (None, None) if blocked => (waiting("PodInitializing", None), None),
        (None, None) => (waiting("ContainerCreating", None), None),
    };
    let running = latest.is_some_and(|l| l.running());
    let (ready, started) = if init {
        (latest.and_then(|l| l.exit_code()) == Some(0), running)
    } else {
        // No probe verdict this step (a container started just now): without a readiness
        // or startup probe it is ready and started at once, as the kubelet reports it.
        let v = view.filter(|v| v.probed).cloned().unwrap_or_else(|| View {
            ready: c.readiness_probe.is_none() && c.startup_probe.is_none(),
            started: c.startup_probe.is_none(),
            ..Default::default()
        });
        (running && v.ready, running && v.started)
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: latest.map(|l| l.image_id.clone()).unwrap_or_default(),
        container_id: latest.map(container_id),
        state: Some(state),
        last_state: last,
        restart_count: latest.map(|l| l.attempt as i32).unwrap_or(0),
        ready,
        started: Some(started),
        ..Default::default()
    }
}

/// The kubelet's `getPhase`.
fn phase(pod: &Pod, init: InitProgress, statuses: &[ContainerStatus]) -> &'static str {
    match init {
        InitProgress::Failed => return "Failed",
        InitProgress::Running => return "Pending",
        InitProgress::Done => {}
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if let Some(t) = s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
            // Waiting to restart after an exit.
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else {
            waiting += 1;
        }
    }
    let policy = RestartPolicy::of(pod);
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if policy == RestartPolicy::Always {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == RestartPolicy::Never {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

/// BestEffort / Burstable / Guaranteed from requests and limits.
fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        let r = c.resources.clone().unwrap_or_default();
        let req = r.requests.unwrap_or_default();
        let lim = r.limits.unwrap_or_default();
        if !req.is_empty() || !lim.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            match (lim.get(res), req.get(res)) {
                (Some(l), Some(q)) if l == q => {}
                (Some(_), None) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

pub(super) fn build(i: &Inputs<'_>) -> PodStatus {
    let spec = i.pod.spec.clone().unwrap_or_default();
    let none: Vec<Observed> = vec![];
    let of = |name: &str| i.attempts.get(name).unwrap_or(&none).as_slice();
    let inits: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, of(&c.name), i.views.get(&c.name), true, false))
        .collect();
    let blocked = i.init != InitProgress::Done;
    let apps: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, of(&c.name), i.views.get(&c.name), false, blocked))
        .collect();
    let phase = phase(i.pod, i.init, &apps);
    let completed = matches!(phase, "Succeeded" | "Failed");
    let old = i
        .pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let cond = |ty: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = old
            .iter()
            .find(|c| c.type_ == ty && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(Utc::now()));
        PodCondition {
            type_: ty.into(),
            status: status.into(),
            reason: if ok { None } else { reason.map(Into::into) },
            message: if ok { None } else { message },
            last_transition_time: Some(since),
            ..Default::default()
        }
    };
    let not_done: Vec<&str> = inits
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let unready: Vec<&str> = apps
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let list = |v: &[&str]| format!("[{}]", v.join(" "));
    let initialized = i.init == InitProgress::Done;
    let (ready_reason, ready_msg) = if completed {
        ("PodCompleted", None)
    } else if !initialized {
        (
            "ContainersNotInitialized",
            Some(format!(
                "containers with incomplete status: {}",
                list(&not_done)
            )),
        )
    } else {
        (
            "ContainersNotReady",
            Some(format!(
                "containers with unready status: {}",
                list(&unready)
            )),
        )
    };
    let all_ready = unready.is_empty() && initialized && !completed;
    let mut conditions = vec![cond(
        "PodReadyToStartContainers",
        i.sb.is_some(),
        None,
        None,
    )];
    conditions.push(cond(
        "Initialized",
        initialized || completed && not_done.is_empty(),
        Some(if completed {
            "PodCompleted"
        } else {
            "ContainersNotInitialized"
        }),
        Some(format!(
            "containers with incomplete status: {}",
            list(&not_done)
        )),
    ));
    conditions.push(cond(
        "Ready",
        all_ready,
        Some(ready_reason),
        ready_msg.clone(),
    ));
    conditions.push(cond(
        "ContainersReady",
        all_ready,
        Some(ready_reason),
        ready_msg,
    ));
    match old.iter().find(|c| c.type_ == "PodScheduled") {
        Some(c) => conditions.push(c.clone()),
        None => conditions.push(cond("PodScheduled", true, None, None)),
    }
    let ip = i.sb.map(|sb| sb.ip.to_string());
    let start_time = match i.sb {
        Some(sb) => Time(sb.start_time),
        None => i
            .pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .unwrap_or(Time(Utc::now())),
    };
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        container_statuses: Some(apps),
        init_container_statuses: if inits.is_empty() { None } else { Some(inits) },
        pod_ips: ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip: ip,
        host_ip: Some(i.host_ip.to_owned()),
        host_ips: Some(vec![HostIP {
            ip: i.host_ip.to_owned(),
        }]),
        start_time: Some(start_time),
        qos_class: Some(qos_class(i.pod).into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gabang_runtime::Status;

    fn obs(attempt: u32, status: Status, code: Option<i32>) -> Observed {
        Observed {
            id: format!("id{attempt}"),
            attempt,
            image_id: "sha256:x".into(),
            state: gabang_runtime::ContainerState {
                status,
                exit_code: code,
                started_at: Some(Utc::now()),
                finished_at: code.map(|_| Utc::now()),
                ..Default::default()
            },
        }
    }

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "0b6f7a2e-1c3d"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap()
    }

    #[test]
    fn phase_follows_the_kubelet() {
        let c = Container {
            name: "c".into(),
            ..Default::default()
        };
        let done = [obs(0, Status::Exited, Some(0))];
        let failed = [obs(0, Status::Exited, Some(3))];
        let running = [
            obs(0, Status::Exited, Some(3)),
            obs(1, Status::Running, None),
        ];
        let st = |all: &[Observed]| vec![container_status(&c, all, None, false, false)];
        assert_eq!(
            phase(&pod("Never"), InitProgress::Done, &st(&done)),
            "Succeeded"
        );
        assert_eq!(
            phase(&pod("Never"), InitProgress::Done, &st(&failed)),
            "Failed"
        );
        assert_eq!(
            phase(&pod("OnFailure"), InitProgress::Done, &st(&failed)),
            "Running"
        );
        assert_eq!(
            phase(&pod("Always"), InitProgress::Done, &st(&done)),
            "Running"
        );
        assert_eq!(
            phase(&pod("Always"), InitProgress::Done, &st(&running)),
            "Running"
        );
        assert_eq!(
            phase(&pod("Always"), InitProgress::Done, &st(&[])),
            "Pending"
        );
        assert_eq!(
            phase(&pod("Always"), InitProgress::Running, &st(&running)),
            "Pending"
        );
        assert_eq!(
            phase(&pod("Never"), InitProgress::Failed, &st(&[])),
            "Failed"
        );
        let s = &st(&running)[0];
        assert_eq!(s.restart_count, 1);
        let last = s.last_state.clone().unwrap().terminated.unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
    }
}
