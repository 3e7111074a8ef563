//! Plain data shared by every backend: key-values, events, list pages, limits.

use crate::error::{Result, StoreError};

/// A cluster-wide revision: every write makes a new, strictly larger one.
pub type Revision = i64;
/// A lease id.
pub type LeaseId = i64;

/// Largest key accepted, in bytes (etcd's default request limit: 1.5 MiB).
pub const MAX_KEY_BYTES: usize = 1536 * 1024;
/// Largest value accepted, in bytes (etcd's default request limit: 1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (its current incarnation).
    pub create_revision: Revision,
    /// Revision of the write that produced this value.
    pub mod_revision: Revision,
    /// Lease the key is attached to, 0 for none.
    pub lease: LeaseId,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For `Put` the new key-value; for `Delete` the key with `mod_revision` set to the
    /// deletion's revision and an empty value.
    pub kv: KeyValue,
    /// The value before the change, when there was one.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of the write that produced this event.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    /// A `Put` that created the key (Kubernetes' ADDED).
    pub fn is_create(&self) -> bool {
        self.kind == EventKind::Put && self.kv.create_revision == self.kv.mod_revision
    }
}

/// Result of [`crate::Backend::get`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResult {
    /// The store revision the read was made at.
    pub revision: Revision,
    pub kv: Option<KeyValue>,
}

/// Options of [`crate::Backend::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// At most this many items (0: no limit).
    pub limit: usize,
    /// Start at this key (inclusive), typically the `continue_key` of the previous page.
    pub start_key: Option<String>,
    /// Read at this revision (None: the latest); pass the previous page's revision so
    /// every page comes from the same snapshot.
    pub revision: Option<Revision>,
}

/// One page of [`crate::Backend::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// Items in key order.
    pub items: Vec<KeyValue>,
    /// The store revision the list was taken at.
    pub revision: Revision,
    /// Where the next page starts, when there are more items.
    pub continue_key: Option<String>,
}

/// Result of [`crate::Backend::delete`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// Revision of the deletion.
    pub revision: Revision,
    /// The key-value that was deleted.
    pub prev: KeyValue,
}

/// Refuses empty or oversized keys and oversized values before anything is written.
pub fn check_write(key: &str, value: &[u8]) -> Result<()> {
    check_key(key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::TooLarge {
            what: "value",
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Refuses empty or oversized keys.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey {
            key: String::new(),
            reason: "empty key",
        });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::TooLarge {
            what: "key",
            size: key.len(),
            limit: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// The smallest key greater than every key starting with `prefix` (etcd's rule);
/// None when there is no such key (empty prefix or all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The key just after `key` (`key` + NUL): where a page after `key` starts.
pub fn key_after(key: &str) -> String {
    let mut k = key.to_string();
    k.push('\0');
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn oversized_inputs_are_refused() {
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            check_write("/k", &big),
            Err(StoreError::TooLarge { what: "value", .. })
        ));
        let key = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            check_write(&key, b""),
            Err(StoreError::TooLarge { what: "key", .. })
        ));
        assert!(matches!(
            check_write("", b""),
            Err(StoreError::InvalidKey { .. })
        ));
        assert!(check_write("/k", &vec![0u8; MAX_VALUE_BYTES]).is_ok());
    }
}
