//! Liveness, readiness and startup probes: how one probe runs ([`run_probe`]: exec, httpGet,
//! tcpSocket, grpc is reported unsupported) and the per-probe state machine ([`ProbeState`]:
//! `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`, `successThreshold`,
//! `failureThreshold`, Kubernetes' defaults). Clocks are `Instant`s passed in, so tests drive
//! time.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    /// With the message kubectl describe shows (`HTTP probe failed with statuscode: 500`).
    Failure(String),
}

/// Runs an exec probe's command in the container (the runtime's exec, or a fake).
pub trait ProbeExec {
    /// Exit code of `argv`, or an error message; must give up after `timeout`.
    fn exec(&self, argv: &[String], timeout: Duration) -> Result<i32, String>;
}

/// Run `probe` once against a container of a pod at `pod_ip` (named ports resolved through
/// `container.ports`); never blocks longer than `timeoutSeconds` (default 1 s).
pub fn run_probe(
    probe: &Probe,
    container: &Container,
    pod_ip: Ipv4Addr,
    exec: &dyn ProbeExec,
) -> ProbeResult {
    let _ = (probe, container, pod_ip, exec);
    todo!("probe helper")
}

/// What a recorded result changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The probe's verdict flipped to healthy (readiness: Ready; startup: started).
    BecameHealthy,
    /// The verdict flipped to unhealthy (liveness/startup: restart the container; readiness:
    /// not Ready), with the last failure's message.
    BecameUnhealthy(String),
}

/// One probe of one container attempt.
#[derive(Debug, Clone)]
pub struct ProbeState {
    pub kind: ProbeKind,
    /// Fields are the probe helper's to choose.
    started: Instant,
}

impl ProbeState {
    /// A probe for a container that started at `started`. Liveness starts healthy; readiness
    /// and startup start unhealthy.
    pub fn new(kind: ProbeKind, probe: &Probe, started: Instant) -> Self {
        let _ = (probe, started, kind);
        todo!("probe helper")
    }
    /// Is a run due at `now`?
    pub fn due(&self, now: Instant) -> bool {
        let _ = (now, self.started);
        todo!("probe helper")
    }
    /// When the next run is due.
    pub fn next_due(&self) -> Instant {
        todo!("probe helper")
    }
    /// Record a run's result at `now` (thresholds applied).
    pub fn record(&mut self, now: Instant, result: ProbeResult) -> Option<Transition> {
        let _ = (now, result);
        todo!("probe helper")
    }
    pub fn healthy(&self) -> bool {
        todo!("probe helper")
    }
    /// `timeoutSeconds` as a duration.
    pub fn timeout(&self) -> Duration {
        todo!("probe helper")
    }
}
