//! The build cache index: cache key → result (state + layer), and the step
//! records of each Dockerfile's previous build, so a miss can say *why*:
//! which file, which build arg, which instruction text or which parent changed.
//! Stored as one JSON file replaced atomically.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The inputs of one step's cache key, kept to explain misses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeyInputs {
    /// Key of the previous step (or of the base: image digest, `scratch`, stage).
    pub parent: String,
    /// What the parent is, for messages (`FROM busybox@sha256:…`, `step 3 RUN …`).
    pub parent_desc: String,
    /// Instruction text with variables expanded.
    pub instruction: String,
    /// Build args in scope that affect the step (RUN sees all as env).
    pub args: BTreeMap<String, String>,
    /// Content hash of copied files (COPY/ADD from the context), or the source stage key.
    pub files_digest: Option<String>,
    /// Per-file digests behind `files_digest`.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    pub platform: String,
}

impl KeyInputs {
    /// The cache key: sha256 over everything but the explanatory fields.
    pub fn key(&self) -> String {
        let v = serde_json::json!({
            "v": 1,
            "parent": self.parent,
            "instruction": self.instruction,
            "args": self.args,
            "files": self.files_digest,
            "platform": self.platform,
        });
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(v.to_string().as_bytes()))
        )
    }
}

/// A layer produced by a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (goes in rootfs.diff_ids).
    pub diff_id: String,
    /// Digest of the stored (compressed) blob, if the store keeps one.
    #[serde(default)]
    pub blob_digest: Option<String>,
    pub size: u64,
}

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Opaque filesystem state id understood by the executor (snapshot / chain id).
    pub state: String,
    pub layer: Option<LayerInfo>,
    pub created_by: String,
}

/// One step of a previous build, at a slot (stage, step index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub stage: usize,
    pub step: usize,
    pub key: String,
    pub inputs: KeyInputs,
}

/// Why a step's cache key did not hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissReason {
    NoCache,
    NotBuiltBefore,
    BaseChanged {
        old: String,
        new: String,
    },
    InstructionChanged {
        old: String,
        new: String,
    },
    BuildArgChanged {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    FilesChanged {
        changed: Vec<String>,
        added: Vec<String>,
        removed: Vec<String>,
    },
    PlatformChanged {
        old: String,
        new: String,
    },
    /// COPY --from: the stage or image copied from changed.
    SourceChanged {
        what: String,
    },
    /// Same instruction and inputs, but an earlier step changed.
    ParentChanged {
        step_desc: String,
        cause: Box<MissReason>,
    },
    /// Same key as before, but the cached result is gone (pruned).
    ResultMissing,
}

fn list(v: &[String]) -> String {
    const MAX: usize = 5;
    let mut s = v.iter().take(MAX).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > MAX {
        s.push_str(&format!(" and {} more", v.len() - MAX));
    }
    s
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::NoCache => write!(f, "--no-cache"),
            MissReason::NotBuiltBefore => write!(f, "not built before"),
            MissReason::BaseChanged { old, new } => write!(f, "base image changed: {old} → {new}"),
            MissReason::InstructionChanged { old, new } => {
                write!(f, "instruction changed: was \"{old}\", now \"{new}\"")
            }
            MissReason::BuildArgChanged { name, old, new } => {
                let show = |v: &Option<String>| {
                    v.as_ref()
                        .map(|s| format!("\"{s}\""))
                        .unwrap_or_else(|| "unset".into())
                };
                write!(f, "build arg {name} changed: {} → {}", show(old), show(new))
            }
            MissReason::FilesChanged {
                changed,
                added,
                removed,
            } => {
                let mut parts = Vec::new();
                if !changed.is_empty() {
                    parts.push(format!("changed: {}", list(changed)));
                }
                if !added.is_empty() {
                    parts.push(format!("added: {}", list(added)));
                }
                if !removed.is_empty() {
                    parts.push(format!("removed: {}", list(removed)));
                }
                if parts.is_empty() {
                    parts.push("file modes or layout changed".into());
                }
                write!(f, "files {}", parts.join("; "))
            }
            MissReason::PlatformChanged { old, new } => {
                write!(f, "platform changed: {old} → {new}")
            }
            MissReason::SourceChanged { what } => write!(f, "{what} changed"),
            MissReason::ParentChanged { step_desc, cause } => {
                write!(f, "an earlier step changed ({step_desc}: {cause})")
            }
            MissReason::ResultMissing => write!(f, "cached result was removed"),
        }
    }
}

/// Compare a step's key inputs with the previous build's record for the same slot.
/// `parent_cause` is the reason the previous step missed in this build, if it did.
pub fn explain_miss(
    prev: Option<&StepRecord>,
    now: &KeyInputs,
    parent_cause: Option<(&str, &MissReason)>,
) -> MissReason {
    let Some(prev) = prev else {
        return MissReason::NotBuiltBefore;
    };
    let p = &prev.inputs;
    if p.instruction != now.instruction {
        return MissReason::InstructionChanged {
            old: p.instruction.clone(),
            new: now.instruction.clone(),
        };
    }
    let names: std::collections::BTreeSet<&String> = p.args.keys().chain(now.args.keys()).collect();
    for name in names {
        let (a, b) = (p.args.get(name), now.args.get(name));
        if a != b {
            return MissReason::BuildArgChanged {
                name: name.clone(),
                old: a.cloned(),
                new: b.cloned(),
            };
        }
    }
    if p.files_digest != now.files_digest {
        let kind = |d: &Option<String>| {
            d.as_deref()
                .and_then(|d| d.split_once(':'))
                .map(|(k, _)| k.to_string())
        };
        if let (Some(a), Some(b)) = (kind(&p.files_digest), kind(&now.files_digest)) {
            if a == b && (a == "stage" || a == "image") {
                return MissReason::SourceChanged {
                    what: format!("the {a} copied from"),
                };
            }
        }
        let changed = now
            .files
            .iter()
            .filter(|(k, v)| p.files.get(*k).is_some_and(|o| o != *v))
            .map(|(k, _)| k.clone())
            .collect();
        let added = now
            .files
            .keys()
            .filter(|k| !p.files.contains_key(*k))
            .cloned()
            .collect();
        let removed = p
            .files
            .keys()
            .filter(|k| !now.files.contains_key(*k))
            .cloned()
            .collect();
        return MissReason::FilesChanged {
            changed,
            added,
            removed,
        };
    }
    if p.platform != now.platform {
        return MissReason::PlatformChanged {
            old: p.platform.clone(),
            new: now.platform.clone(),
        };
    }
    if p.parent != now.parent {
        return match parent_cause {
            Some((desc, cause)) => MissReason::ParentChanged {
                step_desc: desc.to_string(),
                cause: Box::new(cause.clone()),
            },
            None => MissReason::BaseChanged {
                old: p.parent_desc.clone(),
                new: now.parent_desc.clone(),
            },
        };
    }
    MissReason::ResultMissing
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    entries: std::collections::BTreeMap<String, CacheEntry>,
    /// dockerfile id → records of its last build
    last_builds: HashMap<String, Vec<StepRecord>>,
}

#[derive(Debug, thiserror::Error)]
#[error("build cache index {path}: {message}")]
pub struct CacheError {
    pub path: String,
    pub message: String,
}

/// The cache index file.
#[derive(Debug, Default)]
pub struct CacheIndex {
    path: Option<PathBuf>,
    file: IndexFile,
}

impl CacheIndex {
    /// Load (missing or corrupt → empty: a cache may always be dropped).
    pub fn load(path: &Path) -> CacheIndex {
        let file = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<IndexFile>(&b).ok())
            .filter(|f| f.version == 1)
            .unwrap_or_default();
        CacheIndex {
            path: Some(path.to_path_buf()),
            file,
        }
    }

    pub fn in_memory() -> CacheIndex {
        CacheIndex::default()
    }

    pub fn get(&self, key: &str) -> Option<&CacheEntry> {
        self.file.entries.get(key)
    }

    pub fn insert(&mut self, key: &str, entry: CacheEntry) {
        self.file.entries.insert(key.to_string(), entry);
    }

    pub fn remove(&mut self, key: &str) {
        self.file.entries.remove(key);
    }

    pub fn len(&self) -> usize {
        self.file.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.file.entries.is_empty()
    }

    pub fn last_build(&self, dockerfile_id: &str) -> &[StepRecord] {
        self.file
            .last_builds
            .get(dockerfile_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn set_last_build(&mut self, dockerfile_id: &str, records: Vec<StepRecord>) {
        self.file
            .last_builds
            .insert(dockerfile_id.to_string(), records);
    }

    /// Save atomically (temp file + fsync + rename).
    pub fn save(&mut self) -> Result<(), CacheError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let err = |m: String| CacheError {
            path: path.display().to_string(),
            message: m,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        self.file.version = 1;
        let bytes = serde_json::to_vec(&self.file).map_err(|e| err(e.to_string()))?;
        // A no-op rebuild changes nothing: skip the write and its fsync.
        if std::fs::read(path).is_ok_and(|old| old == bytes) {
            return Ok(());
        }
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| err(e.to_string()))?;
        tmp.write_all(&bytes).map_err(|e| err(e.to_string()))?;
        tmp.as_file().sync_all().map_err(|e| err(e.to_string()))?;
        tmp.persist(path).map_err(|e| err(e.error.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            parent: "p".into(),
            parent_desc: "FROM busybox@sha256:aaa".into(),
            instruction: "RUN make".into(),
            args: BTreeMap::from([("V".into(), "1".into())]),
            files_digest: Some("sha256:f".into()),
            files: BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]),
            platform: "linux/amd64".into(),
        }
    }

    fn rec(i: KeyInputs) -> StepRecord {
        StepRecord {
            stage: 0,
            step: 0,
            key: i.key(),
            inputs: i,
        }
    }

    #[test]
    fn key_ignores_explanatory_fields_only() {
        let a = inputs();
        let mut b = inputs();
        b.parent_desc = "other".into();
        b.files.insert("zzz".into(), "9".into());
        assert_eq!(a.key(), b.key());
        for change in 0..5 {
            let mut c = inputs();
            match change {
                0 => c.parent = "q".into(),
                1 => c.instruction = "RUN make all".into(),
                2 => {
                    c.args.insert("W".into(), "2".into());
                }
                3 => c.files_digest = Some("sha256:g".into()),
                _ => c.platform = "linux/arm64".into(),
            }
            assert_ne!(a.key(), c.key(), "change {change}");
        }
    }

    #[test]
    fn explanations() {
        let prev = rec(inputs());
        let mut now = inputs();
        now.args.insert("V".into(), "2".into());
        assert_eq!(
            explain_miss(Some(&prev), &now, None).to_string(),
            "build arg V changed: \"1\" → \"2\""
        );
        let mut now = inputs();
        now.args.remove("V");
        assert_eq!(
            explain_miss(Some(&prev), &now, None).to_string(),
            "build arg V changed: \"1\" → unset"
        );
        let mut now = inputs();
        now.files_digest = Some("sha256:x".into());
        now.files.insert("b".into(), "3".into());
        now.files.insert("c".into(), "4".into());
        now.files.remove("a");
        assert_eq!(
            explain_miss(Some(&prev), &now, None).to_string(),
            "files changed: b; added: c; removed: a"
        );
        let mut now = inputs();
        now.instruction = "RUN make -j2".into();
        assert_eq!(
            explain_miss(Some(&prev), &now, None).to_string(),
            "instruction changed: was \"RUN make\", now \"RUN make -j2\""
        );
        let mut now = inputs();
        now.parent = "other".into();
        now.parent_desc = "FROM busybox@sha256:bbb".into();
        assert_eq!(
            explain_miss(Some(&prev), &now, None).to_string(),
            "base image changed: FROM busybox@sha256:aaa → FROM busybox@sha256:bbb"
        );
        let cause = MissReason::BuildArgChanged {
            name: "X".into(),
            old: None,
            new: Some("1".into()),
        };
        assert_eq!(
            explain_miss(Some(&prev), &now, Some(("step 2 ENV", &cause))).to_string(),
            "an earlier step changed (step 2 ENV: build arg X changed: unset → \"1\")"
        );
        assert_eq!(explain_miss(None, &now, None), MissReason::NotBuiltBefore);
        assert_eq!(
            explain_miss(Some(&prev), &inputs(), None),
            MissReason::ResultMissing
        );
    }

    #[test]
    fn index_round_trip_is_atomic_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/index.json");
        let mut idx = CacheIndex::load(&p);
        assert!(idx.is_empty());
        idx.insert(
            "k",
            CacheEntry {
                state: "s".into(),
                layer: None,
                created_by: "RUN x".into(),
            },
        );
        idx.set_last_build("df", vec![rec(inputs())]);
        idx.save().unwrap();
        let idx2 = CacheIndex::load(&p);
        assert_eq!(idx2.get("k").map(|e| e.state.as_str()), Some("s"));
        assert_eq!(idx2.last_build("df").len(), 1);
        std::fs::write(&p, b"{garbage").unwrap();
        assert!(CacheIndex::load(&p).is_empty());
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp files left: {names:?}");
    }
}
