//! The namespace lifecycle, done in the API server (it works without controllers).
//!
//! `DELETE /api/v1/namespaces/N` marks the namespace (deletionTimestamp,
//! `status.phase: Terminating`); creates in it are refused from then on. [`finish`]
//! then deletes its contents through the ordinary delete path, so object finalizers
//! hold it and bound pods are deleted gracefully (their agent removes them; a pod
//! bound to a node that does not exist is removed at once, as Kubernetes' pod GC
//! does), in repeated passes until nothing is left. Then it drops the `kubernetes`
//! entry of `spec.finalizers`; once no finalizer is left (other `spec.finalizers` go
//! through `PUT …/finalize`, metadata finalizers through an update) the namespace
//! object goes, deleted at the revision the pass read, so a namespace recreated
//! under the same name is never touched.
//!
//! The garbage collector of `gabang-controllers` may work on the same namespace: it
//! only issues ordinary deletes, and a PUT of the namespace cannot change
//! `spec.finalizers` (as in Kubernetes), so its "finalize" is a no-op and the object
//! is only ever removed here, after this check that the namespace is empty. Several
//! API servers sharing a store may run passes at once: every write is a
//! compare-and-swap or a delete that tolerates NotFound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gabang_store::{ListOptions, StoreError};
use serde_json::{json, Value};

use crate::api::{decode, encode, now_rfc3339, Api, AppState, DeleteOpts};
use crate::resources::{self, RESOURCES};

/// The finalizer of `spec.finalizers` that this lifecycle owns.
pub const KUBERNETES: &str = "kubernetes";

/// Removes `ns` from the set of namespaces being finished by this process.
struct Running<'a>(&'a AppState, String);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.0.purging.lock() {
            p.remove(&self.1);
        }
    }
}

/// Starts finishing `ns` in the background unless this process already is.
pub fn spawn_finish(st: &Arc<AppState>, ns: &str) {
    let Ok(mut p) = st.purging.lock() else {
        return;
    };
    if !p.insert(ns.to_string()) {
        return;
    }
    drop(p);
    tokio::spawn(finish(st.clone(), ns.to_string()));
}

/// What one pass saw.
#[derive(Default)]
struct Pass {
    /// Objects left, by resource (plural[.group]).
    remaining: BTreeMap<String, usize>,
    /// Finalizers of objects being deleted, with how many objects hold each.
    finalizers: BTreeMap<String, usize>,
    /// Whether this pass deleted (or marked) anything.
    progressed: bool,
}

async fn finish(st: Arc<AppState>, ns: String) {
    let _running = Running(&st, ns.clone());
    let mut delay = Duration::from_millis(20);
    loop {
        match pass(&st, &ns).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!("finishing namespace {ns}: {}", e.message),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// One pass; true when the namespace is gone (or no longer being deleted).
async fn pass(st: &Arc<AppState>, ns: &str) -> Result<bool, crate::ApiError> {
    let key = format!("/registry/namespaces/{ns}");
    let Some(kv) = st.store.get(&key, None).await?.kv else {
        return Ok(true);
    };
    let obj = decode(&kv)?;
    if obj.pointer("/metadata/deletionTimestamp").is_none() {
        return Ok(true);
    }
    let mut seen = Pass::default();
    delete_contents(st, ns, &mut seen).await?;
    if seen.progressed {
        // Whatever went may have been the last: look again at once.
        seen = Pass::default();
        delete_contents(st, ns, &mut seen).await?;
    }
    let empty = seen.remaining.is_empty();
    let mut new = obj.clone();
    if empty {
        if let Some(f) = new
            .pointer_mut("/spec/finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|x| x != KUBERNETES);
        }
    }
    set_conditions(&mut new, &seen);
    let no_finalizers = ["/spec/finalizers", "/metadata/finalizers"]
        .iter()
        .all(|p| {
            new.pointer(p)
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        });
    if empty && no_finalizers {
        return match st.store.delete(&key, Some(kv.mod_revision)).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(true),
            // Changed meanwhile (a finalizer added, another server's pass): look again.
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        };
    }
    if new != obj {
        match st
            .store
            .update(&key, encode(&new), kv.mod_revision, None)
            .await
        {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(StoreError::NotFound { .. }) => return Ok(true),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Deletes every object of `ns` that is not being deleted yet; counts what is left.
async fn delete_contents(
    st: &Arc<AppState>,
    ns: &str,
    seen: &mut Pass,
) -> Result<(), crate::ApiError> {
    let mut nodes: BTreeMap<String, bool> = BTreeMap::new();
    for def in RESOURCES.iter().filter(|d| d.namespaced) {
        let api = Api { st, def };
        let mut opts = ListOptions::default();
        loop {
            let page = st
                .store
                .list(&resources::prefix(def, Some(ns)), opts.clone())
                .await?;
            for kv in &page.items {
                let Ok(obj) = decode(kv) else { continue };
                let name = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let what = if def.group.is_empty() {
                    def.plural.to_string()
                } else {
                    format!("{}.{}", def.plural, def.group)
                };
                let deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
                let fins: Vec<String> = obj
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .map(|f| {
                        f.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                // A pod whose node does not exist has no agent to finish it.
                let node = obj
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty());
                let orphaned = match node {
                    Some(n) if def.kind == "Pod" => {
                        if !nodes.contains_key(n) {
                            let k = format!("/registry/nodes/{n}");
                            let exists = st.store.get(&k, None).await?.kv.is_some();
                            nodes.insert(n.to_string(), exists);
                        }
                        !nodes.get(n).copied().unwrap_or(true)
                    }
                    _ => false,
                };
                let act = !deleting || (orphaned && fins.is_empty());
                let mut gone = false;
                if act {
                    let r = api
                        .delete_one(
                            Some(ns),
                            &name,
                            DeleteOpts {
                                policy: Some("Background"),
                                grace: orphaned.then_some(0),
                                ..Default::default()
                            },
                        )
                        .await;
                    match r {
                        Ok(o) => {
                            seen.progressed = true;
                            gone = o.pointer("/metadata/deletionTimestamp").is_none()
                                || (fins.is_empty() && orphaned);
                        }
                        Err(e) if e.code == 404 => gone = true,
                        Err(e) if e.code == 409 => seen.progressed = true,
                        Err(e) => return Err(e),
                    }
                }
                if gone {
                    continue;
                }
                *seen.remaining.entry(what).or_default() += 1;
                for f in fins {
                    *seen.finalizers.entry(f).or_default() += 1;
                }
            }
            opts.revision = Some(page.revision);
            match page.continue_key {
                Some(k) => opts.start_key = Some(k),
                None => break,
            }
        }
    }
    Ok(())
}

/// The status conditions Kubernetes' namespace controller reports.
fn set_conditions(ns: &mut Value, seen: &Pass) {
    let content = if seen.remaining.is_empty() {
        (
            "False",
            "ContentRemoved",
            "All content successfully removed".to_string(),
        )
    } else {
        let list: Vec<String> = seen
            .remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        (
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", list.join(", ")),
        )
    };
    let fins = if seen.finalizers.is_empty() {
        (
            "False",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".to_string(),
        )
    } else {
        let list: Vec<String> = seen
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        (
            "True",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                list.join(", ")
            ),
        )
    };
    let old = ns
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut conds = Vec::new();
    for (ty, (status, reason, message)) in [
        ("NamespaceContentRemaining", content),
        ("NamespaceFinalizersRemaining", fins),
    ] {
        let prev = old.iter().find(|c| c["type"] == ty);
        let same = prev.is_some_and(|c| {
            c["status"] == status && c["reason"] == reason && c["message"] == message.as_str()
        });
        if let (true, Some(p)) = (same, prev) {
            conds.push(p.clone());
        } else {
            conds.push(json!({"type": ty, "status": status, "reason": reason,
                "message": message, "lastTransitionTime": now_rfc3339()}));
        }
    }
    ns["status"]["phase"] = json!("Terminating");
    ns["status"]["conditions"] = json!(conds);
}
