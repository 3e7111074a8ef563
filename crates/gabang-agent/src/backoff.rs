//! Crash-loop backoff as the kubelet does it: 10 s after the first failed restart, doubling
//! to 5 min; reset once a container ran 10 min without exiting.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct Backoff {
    _private: (),
}

impl Backoff {
    pub fn new() -> Self {
        todo!("backoff helper")
    }
    /// A container exited at `now` after running since `started`: the earliest time it may
    /// start again.
    pub fn on_exit(&mut self, started: Instant, now: Instant) -> Instant {
        let _ = (started, now);
        todo!("backoff helper")
    }
    /// The delay the last `on_exit` chose (for the `back-off 20s restarting failed container`
    /// message).
    pub fn current(&self) -> Duration {
        todo!("backoff helper")
    }
}
