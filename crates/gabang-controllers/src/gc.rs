//! The garbage collector: ownerReferences, deletion propagation and namespace deletion.
//!
//! The GC looks at every object generically as an [`ObjInfo`] (type, name, uid, owners,
//! finalizers, being-deleted). [`reconcile`] returns what to do:
//! - **background**: a dependent whose owners are all gone is deleted; references to gone
//!   owners are dropped from dependents that still have a live owner;
//! - **foreground**: an owner being deleted with the `foregroundDeletion` finalizer has its
//!   dependents deleted (blocking ones in foreground too, so the wait is recursive) and keeps
//!   the finalizer until no dependent with `blockOwnerDeletion` is left;
//! - **orphan**: an owner being deleted with the `orphan` finalizer has its reference removed
//!   from every dependent, then the finalizer removed;
//! - **namespaces**: a Namespace being deleted with the `kubernetes` finalizer in
//!   `spec.finalizers` has everything inside deleted, then the finalizer removed.
//!
//! An owner is "gone" when no object with its uid is known. Owner kinds the caller did not
//! list (`known_kinds`) are never presumed gone: a missing informer must not delete the world.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// Which object an action is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

/// What the GC needs to know about any object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjInfo {
    pub obj: ObjRef,
    pub owner_references: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

impl ObjInfo {
    pub fn from_meta(api_version: &str, kind: &str, meta: &ObjectMeta) -> Self {
        ObjInfo {
            obj: ObjRef {
                api_version: api_version.into(),
                kind: kind.into(),
                namespace: meta.namespace.clone(),
                name: meta.name.clone().unwrap_or_default(),
                uid: meta.uid.clone().unwrap_or_default(),
            },
            owner_references: meta.owner_references.clone().unwrap_or_default(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }
}

/// DeleteOptions.propagationPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GcAction {
    Delete {
        obj: ObjRef,
        propagation: Propagation,
    },
    SetOwnerReferences {
        obj: ObjRef,
        owner_references: Vec<OwnerReference>,
    },
    RemoveFinalizer {
        obj: ObjRef,
        finalizer: String,
    },
    /// Remove `kubernetes` from the Namespace's `spec.finalizers` (PUT …/finalize).
    FinalizeNamespace {
        name: String,
    },
}

enum OwnerState {
    Gone,
    Alive,
    WaitingForDependents,
}

/// One pass over all known objects and namespaces.
pub fn reconcile(
    objects: &[ObjInfo],
    namespaces: &[Namespace],
    known_kinds: &HashSet<String>,
) -> Vec<GcAction> {
    let by_uid: HashMap<&str, &ObjInfo> = objects.iter().map(|o| (o.obj.uid.as_str(), o)).collect();
    let mut actions = Vec::new();
    let state = |r: &OwnerReference| -> OwnerState {
        match by_uid.get(r.uid.as_str()) {
            None if known_kinds.contains(&r.kind) => OwnerState::Gone,
            None => OwnerState::Alive,
            Some(o) if o.deleting && o.finalizers.iter().any(|f| f == FOREGROUND) => {
                OwnerState::WaitingForDependents
            }
            Some(_) => OwnerState::Alive,
        }
    };
    // Dependents.
    for d in objects {
        if d.owner_references.is_empty() || d.deleting {
            continue;
        }
        let mut alive = 0;
        let mut dangling = false;
        let mut blocked_by_waiting = false;
        let mut waiting_refs = false;
        for r in &d.owner_references {
            match state(r) {
                OwnerState::Gone => dangling = true,
                OwnerState::Alive => alive += 1,
                OwnerState::WaitingForDependents => {
                    waiting_refs = true;
                    blocked_by_waiting |= r.block_owner_deletion == Some(true);
                }
            }
        }
        if alive == 0 {
            let propagation = if blocked_by_waiting {
                Propagation::Foreground
            } else {
                Propagation::Background
            };
            actions.push(GcAction::Delete {
                obj: d.obj.clone(),
                propagation,
            });
        } else if dangling || waiting_refs {
            // Keep the live owners; drop gone ones; stop blocking owners that wait on us
            // (we are not going away, they must not wait forever).
            let refs: Vec<OwnerReference> = d
                .owner_references
                .iter()
                .filter(|r| !matches!(state(r), OwnerState::Gone))
                .map(|r| {
                    let mut r = r.clone();
                    if matches!(state(&r), OwnerState::WaitingForDependents) {
                        r.block_owner_deletion = Some(false);
                    }
                    r
                })
                .collect();
            if refs != d.owner_references {
                actions.push(GcAction::SetOwnerReferences {
                    obj: d.obj.clone(),
                    owner_references: refs,
                });
            }
        }
    }
    // Owners being deleted with finalizers the GC owns.
    for o in objects.iter().filter(|o| o.deleting) {
        let dependents: Vec<&ObjInfo> = objects
            .iter()
            .filter(|d| d.owner_references.iter().any(|r| r.uid == o.obj.uid))
            .collect();
        if o.finalizers.iter().any(|f| f == ORPHAN) {
            if dependents.is_empty() {
                actions.push(GcAction::RemoveFinalizer {
                    obj: o.obj.clone(),
                    finalizer: ORPHAN.into(),
                });
            } else {
                for d in dependents.iter().filter(|d| !d.deleting) {
                    let refs = d
                        .owner_references
                        .iter()
                        .filter(|r| r.uid != o.obj.uid)
                        .cloned()
                        .collect();
                    actions.push(GcAction::SetOwnerReferences {
                        obj: d.obj.clone(),
                        owner_references: refs,
                    });
                }
            }
            continue;
        }
        if o.finalizers.iter().any(|f| f == FOREGROUND) {
            let blocking = dependents.iter().any(|d| {
                d.owner_references
                    .iter()
                    .any(|r| r.uid == o.obj.uid && r.block_owner_deletion == Some(true))
            });
            if !blocking {
                actions.push(GcAction::RemoveFinalizer {
                    obj: o.obj.clone(),
                    finalizer: FOREGROUND.into(),
                });
            }
        }
    }
    // Namespaces.
    for ns in namespaces {
        let finalizing = ns.metadata.deletion_timestamp.is_some()
            && ns
                .spec
                .as_ref()
                .and_then(|s| s.finalizers.as_ref())
                .is_some_and(|f| f.iter().any(|f| f == NAMESPACE_FINALIZER));
        if !finalizing {
            continue;
        }
        let name = ns.metadata.name.clone().unwrap_or_default();
        let inside: Vec<&ObjInfo> = objects
            .iter()
            .filter(|o| o.obj.namespace.as_deref() == Some(name.as_str()))
            .collect();
        if inside.is_empty() {
            actions.push(GcAction::FinalizeNamespace { name });
            continue;
        }
        for o in inside.iter().filter(|o| !o.deleting) {
            let del = GcAction::Delete {
                obj: o.obj.clone(),
                propagation: Propagation::Background,
            };
            if !actions.contains(&del) {
                actions.push(del);
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests;
