//! One sync step of a pod: sandbox → volumes → init containers in order (each to exit 0
//! before the next) → app containers (start, probe, restart with backoff), then the status.
//! Every decision is taken from what is on disk (the runtime's containers and their labels),
//! so a step after an agent restart picks up where the last one stopped and never makes a
//! second container for the same attempt.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::containers::{self, Attempts, Observed};
use super::sandbox::{self, Sandbox};
use super::volumes::{self, Volumes};
use super::{
    images, lock, probes, status, ContainerTrack, PodMeta, PodRuntime, PodState, RestartPolicy,
    SyncOutcome, RESYNC_INIT, RESYNC_RUNNING, RETRY_CONFIG,
};
use crate::backoff::Backoff;
use crate::podspec::{self, PodFacts, RefSource};
use crate::{AgentError, Result};

/// Events of one step: (`type`, `reason`, `message`).
#[derive(Debug, Default)]
pub(super) struct Events(pub Vec<(String, String, String)>);

impl Events {
    pub fn normal(&mut self, reason: &str, message: String) {
        self.0.push(("Normal".into(), reason.into(), message));
    }
    pub fn warning(&mut self, reason: &str, message: String) {
        self.0.push(("Warning".into(), reason.into(), message));
    }
}

/// Why a container is not running (the `waiting` state kubectl shows).
#[derive(Debug, Clone)]
pub(super) struct Waiting {
    pub reason: String,
    pub message: String,
    pub until: Option<Instant>,
}

impl Waiting {
    pub fn new(reason: &str, message: String) -> Self {
        Self {
            reason: reason.into(),
            message,
            until: None,
        }
    }
    pub fn until(mut self, t: Instant) -> Self {
        self.until = Some(t);
        self
    }
}

/// What the step learned about one container beyond its runtime state.
#[derive(Debug, Clone, Default)]
pub(super) struct View {
    pub waiting: Option<Waiting>,
    /// `ready`/`started` come from this step's probes of the running attempt.
    pub probed: bool,
    pub ready: bool,
    pub started: bool,
}

/// Where the init containers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InitProgress {
    /// All init containers exited 0 (or there are none).
    Done,
    /// One is running, waiting or restarting.
    Running,
    /// One failed and restartPolicy is Never: the pod failed.
    Failed,
}

struct Step<'a> {
    rt: &'a PodRuntime,
    pod: &'a Pod,
    meta: PodMeta,
    sb: Sandbox,
    vols: Volumes,
    facts: PodFacts,
    refs: &'a dyn RefSource,
    policy: RestartPolicy,
    ev: Events,
    views: HashMap<String, View>,
    requeue: Option<Instant>,
}

pub(super) fn sync(rt: &PodRuntime, pod: &Pod, refs: &dyn RefSource) -> Result<SyncOutcome> {
    let meta = PodMeta::of(pod)?;
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| AgentError::Other(format!("pod {}: no spec", meta.name)))?;
    let state = rt.pod_state(&meta.uid);
    let mut st = lock(&state);
    let sb = match sandbox::ensure(rt, &meta, pod) {
        Ok(sb) => sb,
        Err(e) => return Ok(no_sandbox(rt, pod, &meta, e)),
    };
    let pod_dir = rt.pod_dir(&meta.uid);
    let vols = volumes::ensure(pod, &pod_dir, refs, rt.cfg.allow_host_path);
    let facts = PodFacts {
        pod_ip: Some(sb.ip.to_string()),
        host_ip: Some(rt.cfg.host_ip.clone()),
        node_name: rt.cfg.node_name.clone(),
    };
    let mut step = Step {
        rt,
        pod,
        policy: RestartPolicy::of(pod),
        meta,
        sb,
        vols,
        facts,
        refs,
        ev: Events::default(),
        views: HashMap::new(),
        requeue: None,
    };
    let attempts = containers::observe(rt, &step.meta.uid);
    let inits = spec.init_containers.as_deref().unwrap_or(&[]);
    let mut init = InitProgress::Done;
    for (i, c) in inits.iter().enumerate() {
        let field = format!("spec.initContainers[{i}]");
        match step.init_container(&mut st, c, &field, &attempts) {
            InitProgress::Done => continue,
            other => {
                init = other;
                break;
            }
        }
    }
    if init == InitProgress::Done {
        for (i, c) in spec.containers.iter().enumerate() {
            let field = format!("spec.containers[{i}]");
            step.app_container(&mut st, c, &field, &attempts);
        }
    }
    let attempts = containers::observe(rt, &step.meta.uid);
    let status = status::build(&status::Inputs {
        pod,
        sb: Some(&step.sb),
        attempts: &attempts,
        views: &step.views,
        init,
        host_ip: &rt.cfg.host_ip,
    });
    let terminal = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    if !terminal && attempts.values().flatten().any(|o| o.running()) {
        step.requeue_in(RESYNC_RUNNING);
    }
    let now = Instant::now();
    Ok(SyncOutcome {
        status,
        requeue_after: step.requeue.map(|t| {
            t.saturating_duration_since(now)
                .max(Duration::from_millis(10))
        }),
        events: step.ev.0,
    })
}

/// The sandbox could not be made (e.g. the pod CIDR is exhausted): the pod stays Pending
/// with a `FailedCreatePodSandBox` event, and the step is retried.
fn no_sandbox(rt: &PodRuntime, pod: &Pod, meta: &PodMeta, e: AgentError) -> SyncOutcome {
    tracing::warn!("pod {}/{}: sandbox: {e}", meta.namespace, meta.name);
    let has_inits = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|v| !v.is_empty());
    let status = status::build(&status::Inputs {
        pod,
        sb: None,
        attempts: &Default::default(),
        views: &HashMap::new(),
        init: if has_inits {
            InitProgress::Running
        } else {
            InitProgress::Done
        },
        host_ip: &rt.cfg.host_ip,
    });
    let mut ev = Events::default();
    ev.warning(
        "FailedCreatePodSandBox",
        format!("Failed to create pod sandbox: {e}"),
    );
    SyncOutcome {
        status,
        requeue_after: Some(RETRY_CONFIG),
        events: ev.0,
    }
}

/// `started_at`/`finished_at` of the runtime as this process's `Instant`s.
pub(super) fn instant_of(t: Option<chrono::DateTime<chrono::Utc>>) -> Instant {
    let now = Instant::now();
    let ago = t
        .and_then(|t| (chrono::Utc::now() - t).to_std().ok())
        .unwrap_or_default();
    now.checked_sub(ago).unwrap_or(now)
}

/// Go's duration format as the kubelet prints it (`10s`, `1m20s`, `5m0s`).
pub(super) fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60)
    }
}

impl Step<'_> {
    fn requeue_in(&mut self, d: Duration) {
        self.requeue_at(Instant::now() + d);
    }
    fn requeue_at(&mut self, t: Instant) {
        self.requeue = Some(self.requeue.map_or(t, |r| r.min(t)));
    }
    fn view(&mut self, name: &str) -> &mut View {
        self.views.entry(name.to_owned()).or_default()
    }
    fn wait(&mut self, name: &str, w: Waiting, retry: Duration) {
        match w.until {
            Some(t) => self.requeue_at(t),
            None => self.requeue_in(retry),
        }
        self.view(name).waiting = Some(w);
    }

    fn init_container(
        &mut self,
        st: &mut PodState,
        c: &Container,
        field: &str,
        attempts: &Attempts,
    ) -> InitProgress {
        let all = attempts.get(&c.name).map(Vec::as_slice).unwrap_or(&[]);
        let Some(latest) = all.last() else {
            self.start_new(st, c, field, true, 0, &[]);
            return InitProgress::Running;
        };
        if latest.running() {
            self.requeue_in(RESYNC_INIT);
            return InitProgress::Running;
        }
        match latest.exit_code() {
            Some(0) => InitProgress::Done,
            Some(code) if self.policy.restarts_init(code) => {
                self.restart(st, c, field, true, latest, all);
                InitProgress::Running
            }
            Some(_) => InitProgress::Failed,
            None => {
                self.start_existing(c, latest);
                InitProgress::Running
            }
        }
    }

    fn app_container(
        &mut self,
        st: &mut PodState,
        c: &Container,
        field: &str,
        attempts: &Attempts,
    ) {
        let all = attempts.get(&c.name).map(Vec::as_slice).unwrap_or(&[]);
        let Some(latest) = all.last() else {
            self.start_new(st, c, field, false, 0, &[]);
            return;
        };
        let mut latest = latest.clone();
        if latest.running() {
            let track = st.containers.entry(c.name.clone()).or_default();
            let v = probes::check(self.rt, track, c, &latest, self.sb.ip, &mut self.ev);
            if let Some(t) = v.next_due {
                self.requeue_at(t);
            }
            let view = self.view(&c.name);
            view.probed = true;
            view.ready = v.ready;
            view.started = v.started;
            let Some((kind, message)) = v.kill else {
                return;
            };
            self.ev.normal(
                "Killing",
                format!(
                    "Container {} failed {kind} probe, will be restarted: {message}",
                    c.name
                ),
            );
            let grace = kill_grace(self.pod, c, &kind);
            if let Err(e) = self.rt.runtime.stop(&latest.id, grace) {
                tracing::warn!("pod {}: stop {}: {e}", self.meta.name, latest.id);
            }
            match self.rt.runtime.store().live_state(&latest.id) {
                Ok(s) => latest.state = s,
                Err(_) => return,
            }
            // The killed attempt's verdicts say nothing about the next one.
            self.view(&c.name).probed = false;
        }
        match latest.exit_code() {
            Some(code) if self.policy.restarts_app(code) => {
                self.restart(st, c, field, false, &latest, all)
            }
            Some(_) => {}
            None if latest.running() => {}
            None => self.start_existing(c, &latest),
        }
    }

    /// A container made by an earlier step that died before starting it.
    fn start_existing(&mut self, c: &Container, o: &Observed) {
        match containers::start(self.rt, &o.id) {
            Ok(()) => self
                .ev
                .normal("Started", format!("Started container {}", c.name)),
            Err(e) => self.ev.warning("Failed", format!("Error: {e}")),
        }
        self.requeue_in(RESYNC_INIT);
    }

    /// The latest attempt exited and the policy restarts it: now, or after the backoff.
    fn restart(
        &mut self,
        st: &mut PodState,
        c: &Container,
        field: &str,
        init: bool,
        latest: &Observed,
        all: &[Observed],
    ) {
        let track: &mut ContainerTrack = st.containers.entry(c.name.clone()).or_default();
        track.probes = None;
        if latest.attempt == 0 {
            // As the kubelet: the first restart is immediate, the backoff starts after it.
            self.start_new(st, c, field, init, 1, all);
            return;
        }
        if track.exit_seen.as_deref() != Some(latest.id.as_str()) {
            let b = track.backoff.get_or_insert_with(Backoff::new);
            let started = instant_of(latest.state.started_at.or(latest.state.finished_at));
            let finished = instant_of(latest.state.finished_at);
            track.restart_at = Some(b.on_exit(started, finished));
            track.exit_seen = Some(latest.id.clone());
        }
        let now = Instant::now();
        let at = track.restart_at.unwrap_or(now);
        if now < at {
            let delay = track
                .backoff
                .as_ref()
                .map(Backoff::current)
                .unwrap_or_default();
            let m = &self.meta;
            let msg = format!(
                "back-off {} restarting failed container={} pod={}_{}({})",
                go_duration(delay),
                c.name,
                m.name,
                m.namespace,
                m.uid
            );
            self.ev.warning(
                "BackOff",
                format!(
                    "Back-off restarting failed container {} in pod {}_{}({})",
                    c.name, m.name, m.namespace, m.uid
                ),
            );
            self.wait(
                &c.name,
                Waiting::new("CrashLoopBackOff", msg).until(at),
                delay,
            );
            return;
        }
        self.start_new(st, c, field, init, latest.attempt + 1, all);
    }

    /// Make and start attempt `attempt` of `c` (0 = first run); `older` are the attempts
    /// before it (all but the previous one are removed once the new one exists).
    fn start_new(
        &mut self,
        st: &mut PodState,
        c: &Container,
        field: &str,
        init: bool,
        attempt: u32,
        older: &[Observed],
    ) {
        if let Some(e) = self.vols.error.clone() {
            self.ev
                .warning("FailedMount", format!("MountVolume.SetUp failed: {e}"));
            self.wait(
                &c.name,
                Waiting::new(e.reason(), e.to_string()),
                RETRY_CONFIG,
            );
            return;
        }
        let plan = match podspec::plan_container(
            self.pod,
            c,
            field,
            &self.vols.dirs,
            &self.facts,
            self.refs,
        ) {
            Ok(p) => p,
            Err(e) => {
                self.ev.warning("Failed", format!("Error: {e}"));
                self.wait(
                    &c.name,
                    Waiting::new(e.reason(), e.to_string()),
                    RETRY_CONFIG,
                );
                return;
            }
        };
        let image = match images::ensure(self.rt, st, &plan.image, plan.pull_policy, &mut self.ev) {
            Ok(i) => i,
            Err(w) => {
                self.wait(&c.name, w, RETRY_CONFIG);
                return;
            }
        };
        let lower = match self.rt.content.snapshot_dirs(&image) {
            Ok(l) => l,
            Err(e) => {
                let msg = format!("image {}: {e}", plan.image);
                self.ev.warning("Failed", format!("Error: {msg}"));
                self.wait(
                    &c.name,
                    Waiting::new("CreateContainerError", msg),
                    RETRY_CONFIG,
                );
                return;
            }
        };
        let read_only = c
            .security_context
            .as_ref()
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false);
        let pod_dir = self.rt.pod_dir(&self.meta.uid);
        if let Some(msg) = plan
            .mounts
            .iter()
            .find_map(|m| super::volumes::check_mount_source(&pod_dir, &m.host_path).err())
        {
            self.ev.warning("Failed", format!("Error: {msg}"));
            self.wait(
                &c.name,
                Waiting::new("CreateContainerConfigError", msg),
                RETRY_CONFIG,
            );
            return;
        }
        let opts = containers::run_options(
            &self.meta,
            &self.sb,
            &self.rt.pod_dir(&self.meta.uid),
            &plan,
            &image.config,
            init,
            attempt,
            read_only,
        );
        match containers::create_and_start(
            self.rt,
            &self.meta.uid,
            &image,
            &plan.image,
            lower,
            opts,
        ) {
            Err(msg) => {
                self.ev.warning("Failed", format!("Error: {msg}"));
                self.wait(
                    &c.name,
                    Waiting::new("CreateContainerError", msg),
                    RETRY_CONFIG,
                );
            }
            Ok((_, start_err)) => {
                self.ev
                    .normal("Created", format!("Created container {}", c.name));
                match start_err {
                    None => {
                        self.ev
                            .normal("Started", format!("Started container {}", c.name));
                        let probed = c.startup_probe.is_some()
                            || c.liveness_probe.is_some()
                            || c.readiness_probe.is_some();
                        if probed {
                            // The first probes are scheduled by the next step.
                            self.requeue_in(RESYNC_INIT);
                        }
                    }
                    Some(e) => {
                        self.ev.warning("Failed", format!("Error: {e}"));
                        self.requeue_in(RESYNC_INIT);
                    }
                }
                containers::prune(self.rt, &self.meta.uid, older, attempt);
            }
        }
    }
}

/// The grace period of a probe-triggered kill: the probe's own, else the pod's (30 s).
fn kill_grace(pod: &Pod, c: &Container, kind: &str) -> Duration {
    let probe = match kind {
        "liveness" => c.liveness_probe.as_ref(),
        _ => c.startup_probe.as_ref(),
    };
    let secs = probe
        .and_then(|p| p.termination_grace_period_seconds)
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_the_kubelet_does() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }
}
