//! The agent's event recorder: Events about pods (Pulled, Created, Started, Killing, BackOff…)
//! are queued and written by one low-priority thread, never on a pod's sync path, like the
//! kubelet's recorder (client-go's broadcaster keeps at most 1000 queued events and drops
//! the rest when full). A burst of new pods thus gets its status written first; its events
//! follow when the CPU is free.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use gabang_controllers::cluster::{Cluster, ClusterError};
use gabang_controllers::http::HttpCluster;
use k8s_openapi::api::core::v1::Event;

/// At most this many events wait to be written (as client-go's `maxQueuedEvents`).
pub(crate) const MAX_QUEUED: usize = 1000;
/// The sender thread's nice value: events yield the CPU to pod syncs and the API server.
const NICE: libc::c_int = 10;

/// The sending half; cheap to share between the sync workers.
pub(crate) struct Recorder {
    tx: SyncSender<Event>,
}

impl Recorder {
    /// Starts the sender thread; it ends once `stopped()` says so and the queue is drained,
    /// or when every [`Recorder`] is gone.
    pub(crate) fn start(
        client: HttpCluster,
        stopped: impl Fn() -> bool + Send + 'static,
    ) -> std::io::Result<(Recorder, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::sync_channel(MAX_QUEUED);
        let t = std::thread::Builder::new()
            .name("agent-events".into())
            .spawn(move || send_loop(&client, &rx, &stopped))?;
        Ok((Recorder { tx }, t))
    }

    /// Queues `ev`; a full queue drops it (logged), it never blocks the caller.
    pub(crate) fn record(&self, ev: Event) {
        match self.tx.try_send(ev) {
            Ok(()) => {}
            Err(TrySendError::Full(ev)) => tracing::warn!(
                "agent: event queue full ({MAX_QUEUED}): dropped {} {} for {}",
                ev.type_.as_deref().unwrap_or(""),
                ev.reason.as_deref().unwrap_or(""),
                ev.involved_object.name.as_deref().unwrap_or("")
            ),
            Err(TrySendError::Disconnected(ev)) => tracing::info!(
                "event {} {}: {}",
                ev.type_.as_deref().unwrap_or(""),
                ev.reason.as_deref().unwrap_or(""),
                ev.message.as_deref().unwrap_or("")
            ),
        }
    }
}

fn send_loop(c: &HttpCluster, rx: &Receiver<Event>, stopped: &dyn Fn() -> bool) {
    // SAFETY: setpriority on this thread's own id changes only this thread's nice value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE);
    }
    loop {
        let ev = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) if stopped() => return,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let what = || {
            format!(
                "{} {} pod {}/{}: {}",
                ev.type_.as_deref().unwrap_or(""),
                ev.reason.as_deref().unwrap_or(""),
                ev.involved_object.namespace.as_deref().unwrap_or(""),
                ev.involved_object.name.as_deref().unwrap_or(""),
                ev.message.as_deref().unwrap_or("")
            )
        };
        match c.create(&ev) {
            Ok(_) => {}
            // No events resource on this API server (or the namespace is gone).
            Err(ClusterError::NotFound { .. }) => tracing::info!("event {}", what()),
            Err(e) => tracing::warn!("agent: event {}: {e}", what()),
        }
    }
}
