//! The work queue of the controller manager: deduplicated keys, delayed adds and per-key
//! exponential backoff (Kubernetes' rate-limiting delaying queue, for one worker).
//!
//! A key waits at most once: adding a key already waiting is a no-op, and a delayed add of a
//! waiting key is dropped (it runs sooner anyway). A key being processed may be added again;
//! it then runs once more after. Times are the manager's [`crate::nodelifecycle::Clock`]
//! (a fake clock in tests); [`WorkQueue::wait`] sleeps in real time until an add or a timeout.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Condvar, Mutex, MutexGuard};

use k8s_openapi::chrono::{DateTime, Duration, Utc};

/// First retry after a failure; doubles per consecutive failure of the key.
pub const BACKOFF_BASE_MS: i64 = 50;
/// Longest retry delay.
pub const BACKOFF_MAX_SECONDS: i64 = 300;

struct State<T> {
    ready: VecDeque<T>,
    waiting: HashSet<T>,
    delayed: HashMap<T, DateTime<Utc>>,
    failures: HashMap<T, u32>,
}

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
}

impl<T: Clone + Eq + Hash> Default for WorkQueue<T> {
    fn default() -> Self {
        WorkQueue {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                waiting: HashSet::new(),
                delayed: HashMap::new(),
                failures: HashMap::new(),
            }),
            cv: Condvar::new(),
        }
    }
}

impl<T: Clone + Eq + Hash> WorkQueue<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `key` now (no-op if it is already waiting).
    pub fn add(&self, key: T) {
        let mut st = self.lock();
        if st.waiting.insert(key.clone()) {
            st.delayed.remove(&key);
            st.ready.push_back(key);
            drop(st);
            self.cv.notify_all();
        }
    }

    /// Queue `key` at `at` (the earliest of several delayed adds wins).
    pub fn add_at(&self, key: T, at: DateTime<Utc>) {
        let mut st = self.lock();
        if st.waiting.contains(&key) {
            return;
        }
        let e = st.delayed.entry(key).or_insert(at);
        if at < *e {
            *e = at;
        }
        drop(st);
        self.cv.notify_all();
    }

    /// A failed key: retry after `BACKOFF_BASE_MS * 2^(failures-1)`, at most
    /// `BACKOFF_MAX_SECONDS`. Returns the delay.
    pub fn add_rate_limited(&self, key: T, now: DateTime<Utc>) -> Duration {
        let n = {
            let mut st = self.lock();
            let n = st.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let ms = BACKOFF_BASE_MS.saturating_mul(1i64 << (n - 1).min(20));
        let delay = Duration::milliseconds(ms.min(BACKOFF_MAX_SECONDS * 1000));
        self.add_at(key, now + delay);
        delay
    }

    /// The key succeeded: its backoff starts over.
    pub fn forget(&self, key: &T) {
        self.lock().failures.remove(key);
    }

    /// Consecutive failures of `key`.
    pub fn failures(&self, key: &T) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key due at `now`, if any.
    pub fn pop(&self, now: DateTime<Utc>) -> Option<T> {
        let mut st = self.lock();
        if !st.delayed.is_empty() {
            let due: Vec<T> = st
                .delayed
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in due {
                st.delayed.remove(&k);
                if st.waiting.insert(k.clone()) {
                    st.ready.push_back(k);
                }
            }
        }
        let k = st.ready.pop_front()?;
        st.waiting.remove(&k);
        Some(k)
    }

    /// When the earliest delayed key is due.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.lock().delayed.values().min().copied()
    }

    /// Keys ready now (not counting delayed ones).
    pub fn len(&self) -> usize {
        self.lock().ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Block until a key is added or `timeout` passes (real time). Returns at once if a key
    /// is ready.
    pub fn wait(&self, timeout: std::time::Duration) {
        let st = self.lock();
        if !st.ready.is_empty() {
            return;
        }
        let _ = self.cv.wait_timeout(st, timeout);
    }

    /// Wake a [`WorkQueue::wait`]er (e.g. to stop).
    pub fn wake(&self) {
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::chrono::TimeZone;

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 0).unwrap() + Duration::milliseconds(ms)
    }

    #[test]
    fn dedups_delays_and_backs_off() {
        let q = WorkQueue::default();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        q.add_at("c", t(1000));
        q.add_at("c", t(500));
        assert_eq!(q.next_due(), Some(t(500)));
        assert_eq!(q.pop(t(0)), Some("a"));
        assert_eq!(q.pop(t(0)), Some("b"));
        assert_eq!(q.pop(t(0)), None, "c is not due");
        assert_eq!(q.pop(t(500)), Some("c"));
        // A key being processed can be queued again.
        q.add("a");
        assert_eq!(q.pop(t(0)), Some("a"));
        // Backoff doubles per failure and resets on forget.
        assert_eq!(q.add_rate_limited("x", t(0)), Duration::milliseconds(50));
        assert_eq!(q.pop(t(49)), None);
        assert_eq!(q.pop(t(50)), Some("x"));
        assert_eq!(q.add_rate_limited("x", t(0)), Duration::milliseconds(100));
        assert_eq!(q.add_rate_limited("x", t(0)), Duration::milliseconds(200));
        assert_eq!(q.failures(&"x"), 3);
        q.forget(&"x");
        assert_eq!(q.add_rate_limited("x", t(0)), Duration::milliseconds(50));
        for _ in 0..40 {
            q.add_rate_limited("y", t(0));
        }
        assert_eq!(
            q.add_rate_limited("y", t(0)),
            Duration::seconds(BACKOFF_MAX_SECONDS)
        );
    }
}
