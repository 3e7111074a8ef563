//! Request counters by verb, for tests and operators: how many lists, watches,
//! gets and writes the server answered (e.g. to prove a client does not relist).

use std::sync::atomic::{AtomicU64, Ordering};

/// The verbs counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    List,
    Watch,
    Get,
    Create,
    Update,
    Patch,
    Delete,
}

/// Live counters, shared by every request.
#[derive(Default)]
pub struct Counters([AtomicU64; 7]);

impl Counters {
    pub fn add(&self, v: Verb) {
        self.0[v as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> RequestCounts {
        let g = |v: Verb| self.0[v as usize].load(Ordering::Relaxed);
        RequestCounts {
            lists: g(Verb::List),
            watches: g(Verb::Watch),
            gets: g(Verb::Get),
            creates: g(Verb::Create),
            updates: g(Verb::Update),
            patches: g(Verb::Patch),
            deletes: g(Verb::Delete),
        }
    }
}

/// Resource requests answered since the server started, by verb (discovery,
/// OpenAPI and health checks are not counted; subresources count under their verb).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub lists: u64,
    pub watches: u64,
    pub gets: u64,
    pub creates: u64,
    pub updates: u64,
    pub patches: u64,
    pub deletes: u64,
}
