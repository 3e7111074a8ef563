//! Probes of a running container: startup first (until it succeeds, nothing else runs),
//! then liveness (a failure kills and restarts the container) and readiness (drives
//! `ready`). Exec probes run through the runtime's exec shim with a timeout; httpGet and
//! tcpSocket go to the pod IP, reachable from the host over the pod bridge.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};

use super::containers::Observed;
use super::sync::{instant_of, Events};
use super::{ContainerTrack, ProbeSet};
use crate::probe::{run_probe, ProbeExec, ProbeKind, ProbeResult, ProbeState, Transition};

/// What the probes say about a running container.
pub(super) struct Verdict {
    pub started: bool,
    pub ready: bool,
    /// (`liveness`|`startup`, message): kill and restart it.
    pub kill: Option<(String, String)>,
    /// When the next probe is due.
    pub next_due: Option<Instant>,
}

/// Exec probes through the runtime's exec shim.
struct RuntimeExec<'a> {
    rt: &'a gabang_runtime::Runtime,
    id: &'a str,
}

impl ProbeExec for RuntimeExec<'_> {
    fn exec(&self, argv: &[String], timeout: Duration) -> Result<i32, String> {
        let spec = gabang_runtime::ExecSpec {
            args: argv.to_vec(),
            ..Default::default()
        };
        let mut cmd = self
            .rt
            .exec_command(self.id, &spec)
            .map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("exec: {e}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return Ok(s.code().unwrap_or(255)),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "command {argv:?} timed out after {}",
                        super::sync::go_duration(timeout)
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("exec: {e}")),
            }
        }
    }
}

fn word(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Liveness => "liveness",
        ProbeKind::Readiness => "readiness",
        ProbeKind::Startup => "startup",
    }
}

fn title(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Liveness => "Liveness",
        ProbeKind::Readiness => "Readiness",
        ProbeKind::Startup => "Startup",
    }
}

/// Run the due probes of `o` (the running attempt of `c`) and say what they decided.
pub(super) fn check(
    rt: &super::PodRuntime,
    track: &mut ContainerTrack,
    c: &Container,
    o: &Observed,
    pod_ip: Ipv4Addr,
    ev: &mut Events,
) -> Verdict {
    if track.probes.as_ref().map(|p| p.id.as_str()) != Some(o.id.as_str()) {
        let started = instant_of(o.state.started_at);
        let mk = |kind, p: &Option<Probe>| p.as_ref().map(|p| ProbeState::new(kind, p, started));
        track.probes = Some(ProbeSet {
            id: o.id.clone(),
            startup: mk(ProbeKind::Startup, &c.startup_probe),
            liveness: mk(ProbeKind::Liveness, &c.liveness_probe),
            readiness: mk(ProbeKind::Readiness, &c.readiness_probe),
        });
    }
    let mut v = Verdict {
        started: true,
        ready: true,
        kill: None,
        next_due: None,
    };
    let Some(ps) = track.probes.as_mut() else {
        return v;
    };
    let exec = RuntimeExec {
        rt: &rt.runtime,
        id: &o.id,
    };
    let next = |t: Instant, v: &mut Verdict| {
        v.next_due = Some(v.next_due.map_or(t, |n: Instant| n.min(t)));
    };
    if let (Some(state), Some(probe)) = (ps.startup.as_mut(), c.startup_probe.as_ref()) {
        if !state.healthy() {
            if let Some(Transition::BecameUnhealthy(m)) =
                run_due(state, probe, c, pod_ip, &exec, ev)
            {
                v.kill = Some((word(ProbeKind::Startup).into(), m));
            }
            if !state.healthy() {
                next(state.next_due(), &mut v);
                v.started = false;
                v.ready = false;
                return v;
            }
        }
    }
    if let (Some(state), Some(probe)) = (ps.liveness.as_mut(), c.liveness_probe.as_ref()) {
        if let Some(Transition::BecameUnhealthy(m)) = run_due(state, probe, c, pod_ip, &exec, ev) {
            v.kill = Some((word(ProbeKind::Liveness).into(), m));
        }
        next(state.next_due(), &mut v);
    }
    if let (Some(state), Some(probe)) = (ps.readiness.as_mut(), c.readiness_probe.as_ref()) {
        run_due(state, probe, c, pod_ip, &exec, ev);
        v.ready = state.healthy();
        next(state.next_due(), &mut v);
    }
    v
}

/// Run `probe` if due, record the result, report failures as `Unhealthy` events.
fn run_due(
    state: &mut ProbeState,
    probe: &Probe,
    c: &Container,
    pod_ip: Ipv4Addr,
    exec: &RuntimeExec<'_>,
    ev: &mut Events,
) -> Option<Transition> {
    if !state.due(Instant::now()) {
        return None;
    }
    let r = run_probe(probe, c, pod_ip, exec);
    if let ProbeResult::Failure(m) = &r {
        ev.warning(
            "Unhealthy",
            format!("{} probe failed: {m}", title(state.kind)),
        );
    }
    state.record(Instant::now(), r)
}
