//! The OCI runtime spec (`bundle/config.json`) for a container, with docker's security
//! defaults: docker's capability set, `no_new_privs`, docker's default seccomp allow-list
//! (`seccomp.rs`), masked and read-only `/proc` paths, a
//! device cgroup allow-list, and no rlimits (this machine cannot raise any: lacking
//! CAP_SYS_RESOURCE, the container inherits the shim's limits).

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::error::{Result, RuntimeError};
use crate::user::ResolvedUser;

/// docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Syscalls the default seccomp profile refuses (the profile itself is an allow-list).
pub use crate::seccomp::DENIED_SYSCALLS;

/// The label (`--security-opt seccomp=unconfined` sets it to `unconfined`) that turns the
/// default seccomp profile off for a container.
pub const SECCOMP_LABEL: &str = "io.gabang.security-opt.seccomp";

const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Everything the spec depends on, resolved by the shim at start time.
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub args: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub user: &'a ResolvedUser,
    pub hostname: &'a str,
    pub read_only: bool,
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    /// `Some(path)`: join that netns; `None` with `host_network`: no netns.
    pub netns_path: Option<PathBuf>,
    pub host_network: bool,
    /// (source on host, destination, read_only) bind mounts, including /etc files.
    pub binds: Vec<(PathBuf, String, bool)>,
    /// The default seccomp profile applies (recorded as an annotation; loaded by the shim).
    pub seccomp: bool,
    /// The process gets a pty (created inside the container, see `shim.rs`).
    pub terminal: bool,
    pub cgroup_parent: Option<&'a str>,
}

/// The container's cgroup, relative to a controller's root: `<parent or /gabang>/<id>`.
pub fn cgroups_path(parent: Option<&str>, id: &str) -> String {
    let parent = parent.unwrap_or("/gabang").trim_end_matches('/');
    if parent.starts_with('/') {
        format!("{parent}/{id}")
    } else {
        format!("/{parent}/{id}")
    }
}

pub fn build_spec(i: &SpecInput<'_>) -> Result<Spec> {
    let caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    let mut mounts = vec![
        json!({"destination":"/proc","type":"proc","source":"proc","options":["nosuid","noexec","nodev"]}),
        json!({"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}),
        json!({"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620","gid=5"]}),
        json!({"destination":"/dev/shm","type":"tmpfs","source":"shm","options":["nosuid","noexec","nodev","mode=1777","size=65536k"]}),
        json!({"destination":"/dev/mqueue","type":"mqueue","source":"mqueue","options":["nosuid","noexec","nodev"]}),
    ];
    if i.host_network {
        mounts.push(json!({"destination":"/sys","type":"bind","source":"/sys","options":["rbind","nosuid","noexec","nodev","ro"]}));
    } else {
        mounts.push(json!({"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]}));
    }
    for (src, dst, ro) in &i.binds {
        let mut opts = vec!["rbind", "rprivate"];
        if *ro {
            opts.push("ro");
        }
        mounts.push(json!({"destination": dst, "type":"bind", "source": src, "options": opts}));
    }
    let mut namespaces = vec![
        json!({"type":"pid"}),
        json!({"type":"ipc"}),
        json!({"type":"uts"}),
        json!({"type":"mount"}),
        json!({"type":"cgroup"}),
    ];
    if !i.host_network {
        match &i.netns_path {
            Some(p) => namespaces.push(json!({"type":"network","path":p})),
            None => namespaces.push(json!({"type":"network"})),
        }
    }
    let mut resources = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"}
        ]
    });
    if let Some(m) = i.memory {
        if m < 6 * 1024 * 1024 {
            return Err(RuntimeError::InvalidOption(
                "--memory: minimum memory limit allowed is 6MB".into(),
            ));
        }
        resources["memory"] = json!({"limit": m});
    }
    if let Some(c) = i.cpus {
        if c.is_nan() || c <= 0.0 || c > 1024.0 {
            return Err(RuntimeError::InvalidOption(format!(
                "--cpus {c}: out of range"
            )));
        }
        let period: u64 = 100_000;
        resources["cpu"] = json!({"quota": (c * period as f64) as i64, "period": period});
    }
    if let Some(p) = i.pids_limit {
        if p > 0 {
            resources["pids"] = json!({"limit": p});
        }
    }
    let linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path(i.cgroup_parent, i.id),
        "resources": resources,
        "maskedPaths": MASKED,
        "readonlyPaths": READONLY,
        "rootfsPropagation": "private",
    });

    let mut user = json!({"uid": i.user.uid, "gid": i.user.gid});
    if !i.user.additional_gids.is_empty() {
        user["additionalGids"] = json!(i.user.additional_gids);
    }
    let spec: Value = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": i.terminal,
            "user": user,
            "args": i.args,
            "env": i.env,
            "cwd": i.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": i.read_only},
        "hostname": i.hostname,
        "mounts": mounts,
        "linux": linux,
        // The profile is not in `linux.seccomp`: the shim loads it precompiled (seccomp.rs).
        "annotations": {SECCOMP_LABEL: if i.seccomp { "default" } else { "unconfined" }},
    });
    serde_json::from_value(spec).map_err(|e| RuntimeError::Shim(format!("building OCI spec: {e}")))
}

/// Write the spec to `bundle/config.json`.
pub fn write_spec(bundle: &Path, spec: &Spec) -> Result<()> {
    crate::store::write_json_atomic(&bundle.join("config.json"), spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_has_security_defaults_and_limits() {
        let user = ResolvedUser {
            uid: 65534,
            gid: 65534,
            additional_gids: vec![],
            home: "/".into(),
        };
        let args = vec!["sh".to_owned()];
        let env = vec!["PATH=/bin".to_owned()];
        let s = build_spec(&SpecInput {
            id: "abc",
            args: &args,
            env: &env,
            cwd: "/",
            user: &user,
            hostname: "h",
            read_only: true,
            memory: Some(32 << 20),
            cpus: Some(0.5),
            pids_limit: Some(50),
            netns_path: None,
            host_network: false,
            cgroup_parent: None,
            binds: vec![],
            seccomp: true,
            terminal: false,
        })
        .unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.no_new_privileges(), Some(true));
        assert!(p.rlimits().is_none(), "never set rlimits");
        assert_eq!(p.user().uid(), 65534);
        let l = s.linux().as_ref().unwrap();
        let r = l.resources().as_ref().unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(32 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 50);
        assert_eq!(
            s.annotations().as_ref().unwrap()[SECCOMP_LABEL],
            "default",
            "seccomp on"
        );
        assert_eq!(p.terminal(), Some(false));
        assert!(l
            .masked_paths()
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m == "/proc/kcore"));
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
    }
}
