//! Crash-loop backoff as the kubelet does it: 10 s after the first failed restart, doubling
//! to 5 min; reset once a container ran 10 min without exiting.

use std::time::{Duration, Instant};

/// The first delay after a container exits.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The longest delay (`CrashLoopBackOff` never waits longer).
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran at least this long before exiting starts the sequence again.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// The restart delay of one container of one pod.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The delay the last `on_exit` chose; `None` before the first exit.
    last: Option<Duration>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self { last: None }
    }
    /// A container exited at `now` after running since `started`: the earliest time it may
    /// start again.
    pub fn on_exit(&mut self, started: Instant, now: Instant) -> Instant {
        let ran = now.saturating_duration_since(started);
        let delay = match self.last {
            Some(prev) if ran < RESET_AFTER => prev.saturating_mul(2).min(MAX),
            _ => INITIAL,
        };
        self.last = Some(delay);
        now + delay
    }
    /// The delay the last `on_exit` chose (for the `back-off 20s restarting failed container`
    /// message); zero before the first exit.
    pub fn current(&self) -> Duration {
        self.last.unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_ten_seconds_to_five_minutes() {
        let mut b = Backoff::new();
        assert_eq!(b.current(), Duration::ZERO);
        let t0 = Instant::now();
        let mut now = t0;
        let mut seen = Vec::new();
        for _ in 0..8 {
            let started = now;
            now += Duration::from_secs(1);
            let until = b.on_exit(started, now);
            assert_eq!(until - now, b.current());
            seen.push(b.current().as_secs());
            now = until;
        }
        assert_eq!(seen, vec![10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn resets_after_ten_minutes_of_running() {
        let mut b = Backoff::new();
        let t0 = Instant::now();
        b.on_exit(t0, t0 + Duration::from_secs(1));
        b.on_exit(t0, t0 + Duration::from_secs(2));
        b.on_exit(t0, t0 + Duration::from_secs(3));
        assert_eq!(b.current(), Duration::from_secs(40));
        // Ran 9 min 59 s: no reset.
        let s = t0 + Duration::from_secs(100);
        b.on_exit(s, s + Duration::from_secs(599));
        assert_eq!(b.current(), Duration::from_secs(80));
        // Ran exactly 10 min: back to 10 s, then doubling again.
        let s = t0 + Duration::from_secs(1000);
        let now = s + RESET_AFTER;
        assert_eq!(b.on_exit(s, now), now + INITIAL);
        b.on_exit(now, now + Duration::from_secs(5));
        assert_eq!(b.current(), Duration::from_secs(20));
    }

    #[test]
    fn default_is_new() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.on_exit(t0, t0), t0 + INITIAL);
    }
}
