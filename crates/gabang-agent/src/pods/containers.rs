//! The runtime containers of a pod: found through the index (built from their labels), one
//! per attempt of each Pod container, named `k8s_<container>_<pod>_<ns>_<uid8>_<attempt>`;
//! created with the pod's netns, cgroup parent and labels, started detached; attempts older
//! than the previous one removed.

use std::collections::BTreeMap;

use gabang_runtime::{
    Attach, ContainerState, CreateRequest, NetworkMode, RunOptions, RuntimeError, Status,
    VolumeSpec,
};

use super::sandbox::{etc_binds, Sandbox};
use super::{lock, PodMeta, PodRuntime};
use crate::labels;
use crate::podspec::ContainerPlan;

/// One runtime container of a pod, as found on disk.
#[derive(Debug, Clone)]
pub(super) struct Observed {
    pub id: String,
    pub attempt: u32,
    pub image_id: String,
    pub state: ContainerState,
}

impl Observed {
    pub fn running(&self) -> bool {
        self.state.status.is_active()
    }
    /// Exited (or its shim died): the exit code, 255 when none was recorded.
    pub fn exit_code(&self) -> Option<i32> {
        match self.state.status {
            Status::Exited | Status::Dead => Some(self.state.exit_code.unwrap_or(255)),
            _ => None,
        }
    }
}

/// Container name → its attempts, oldest first.
pub(super) type Attempts = BTreeMap<String, Vec<Observed>>;

/// Ids of the pod's runtime containers.
pub(super) fn ids(rt: &PodRuntime, uid: &str) -> Vec<String> {
    lock(&rt.index)
        .get(uid)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default()
}

pub(super) fn remember(rt: &PodRuntime, uid: &str, id: &str) {
    lock(&rt.index)
        .entry(uid.to_owned())
        .or_default()
        .insert(id.to_owned());
}

pub(super) fn forget(rt: &PodRuntime, uid: &str, id: &str) {
    let mut index = lock(&rt.index);
    if let Some(s) = index.get_mut(uid) {
        s.remove(id);
        if s.is_empty() {
            index.remove(uid);
        }
    }
}

/// Read the pod's containers (config labels + live state).
pub(super) fn observe(rt: &PodRuntime, uid: &str) -> Attempts {
    let mut out: Attempts = BTreeMap::new();
    for id in ids(rt, uid) {
        let store = rt.runtime.store();
        let (cfg, state) = match (store.load_config(&id), store.live_state(&id)) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(RuntimeError::NotFound(_)), _) | (_, Err(RuntimeError::NotFound(_))) => {
                forget(rt, uid, &id);
                continue;
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("pod {uid}: container {id} unreadable: {e}");
                continue;
            }
        };
        let l = &cfg.options.labels;
        let (Some(name), Some(attempt)) = (
            l.get(labels::CONTAINER_NAME),
            l.get(labels::ATTEMPT).and_then(|a| a.parse().ok()),
        ) else {
            continue;
        };
        out.entry(name.clone()).or_default().push(Observed {
            id,
            attempt,
            image_id: cfg.image_id,
            state,
        });
    }
    for v in out.values_mut() {
        v.sort_by_key(|o| o.attempt);
    }
    out
}

/// `k8s_<container>_<pod>_<ns>_<uid8>_<attempt>`, cut to the runtime's 128 characters.
pub(super) fn runtime_name(meta: &PodMeta, container: &str, attempt: u32) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let uid8: String = meta.uid.chars().take(8).collect();
    let tail = format!("_{}_{}_{attempt}", clean(&meta.namespace), clean(&uid8));
    let mut head = format!("k8s_{}_{}", clean(container), clean(&meta.name));
    let room = 128usize.saturating_sub(tail.len());
    if head.len() > room {
        head.truncate(room);
    }
    head + &tail
}

/// The run options of one attempt.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_options(
    meta: &PodMeta,
    sb: &Sandbox,
    pod_dir: &std::path::Path,
    plan: &ContainerPlan,
    image_config: &oci_spec::image::ImageConfiguration,
    init: bool,
    attempt: u32,
    read_only: bool,
) -> RunOptions {
    let mut volumes: Vec<VolumeSpec> = Vec::new();
    let mounted: Vec<&str> = plan
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    for (src, dst, ro) in etc_binds(pod_dir) {
        // As the kubelet: a volume mounted on /etc/hosts wins over the managed file.
        if !mounted.contains(&dst) {
            volumes.push(VolumeSpec {
                source: src.display().to_string(),
                destination: dst.to_owned(),
                read_only: ro,
            });
        }
    }
    for m in &plan.mounts {
        volumes.push(VolumeSpec {
            source: m.host_path.display().to_string(),
            destination: m.container_path.clone(),
            read_only: m.read_only,
        });
    }
    let (entrypoint, cmd) = argv(plan, image_config);
    let mut l = BTreeMap::new();
    l.insert(labels::POD_NAMESPACE.to_owned(), meta.namespace.clone());
    l.insert(labels::POD_NAME.to_owned(), meta.name.clone());
    l.insert(labels::POD_UID.to_owned(), meta.uid.clone());
    l.insert(labels::CONTAINER_NAME.to_owned(), plan.name.clone());
    l.insert(labels::ATTEMPT.to_owned(), attempt.to_string());
    l.insert(
        labels::CONTAINER_TYPE.to_owned(),
        if init { "init" } else { "app" }.to_owned(),
    );
    RunOptions {
        name: Some(runtime_name(meta, &plan.name, attempt)),
        cmd,
        entrypoint,
        env: plan.env.clone(),
        workdir: plan.workdir.clone(),
        user: plan.user.clone(),
        hostname: Some(sb.hostname.clone()),
        memory: plan.memory_limit,
        cpus: plan.cpu_limit,
        pids_limit: None,
        // Ignored when `netns` is set (the pod's sandbox).
        network: if sb.host_network {
            NetworkMode::Host
        } else {
            NetworkMode::None
        },
        publish: vec![],
        volumes,
        restart: gabang_runtime::RestartPolicy::No,
        read_only,
        auto_remove: false,
        interactive: false,
        tty: plan.tty,
        labels: l,
        netns: (!sb.host_network).then(|| sb.netns.clone()),
        netns_ip: (!sb.host_network).then_some(sb.ip),
        cgroup_parent: Some(PodRuntime::cgroup_parent(&meta.uid)),
    }
}

/// Kubernetes' command/args over the image ENTRYPOINT/CMD, expressed in the runtime's
/// options: untouched when the pod overrides neither; otherwise the whole argv as `cmd` with
/// the image entrypoint cleared (`entrypoint: Some("")`), since the runtime takes a single
/// entrypoint string.
pub(super) fn argv(
    plan: &ContainerPlan,
    image: &oci_spec::image::ImageConfiguration,
) -> (Option<String>, Vec<String>) {
    // As the kubelet: an empty `command`/`args` list counts as not given.
    let ep_override = plan.entrypoint.clone().filter(|v| !v.is_empty());
    let cmd_override = plan.cmd.clone().filter(|v| !v.is_empty());
    if ep_override.is_none() && cmd_override.is_none() {
        return (None, vec![]);
    }
    let cfg = image.config().as_ref();
    let (ep, cmd) = match ep_override {
        Some(ep) => (ep, cmd_override.unwrap_or_default()),
        None => (
            cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
            cmd_override.unwrap_or_default(),
        ),
    };
    (Some(String::new()), ep.into_iter().chain(cmd).collect())
}

/// Create attempt `opts` of a container and start it detached. `Ok(id)` also when the start
/// failed (the container then shows as exited with the runtime's error); `Err` when nothing
/// could be created.
pub(super) fn create_and_start(
    rt: &PodRuntime,
    uid: &str,
    image: &gabang_content::Image,
    image_ref: &str,
    lower_dirs: Vec<std::path::PathBuf>,
    opts: RunOptions,
) -> Result<(String, Option<String>), String> {
    let name = opts.name.clone().unwrap_or_default();
    let req = CreateRequest {
        image: image_ref.to_owned(),
        image_id: image.id.clone(),
        lower_dirs,
        image_config: image.config.clone(),
        options: opts,
    };
    let id = match rt.runtime.create(req) {
        Ok(id) => id,
        // Made by an earlier run that died before starting it: adopt it.
        Err(RuntimeError::NameInUse { id, .. }) => id,
        Err(e) => return Err(e.to_string()),
    };
    remember(rt, uid, &id);
    tracing::debug!("pod {uid}: created {name} ({id})");
    Ok((id.clone(), start(rt, &id).err()))
}

/// Start a created container detached; the shim is reaped by a small thread.
pub(super) fn start(rt: &PodRuntime, id: &str) -> Result<(), String> {
    match rt.runtime.start(id, Attach::Detached) {
        Ok(started) => {
            let r = std::thread::Builder::new()
                .name("shim-reaper".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    let _ = started.wait();
                });
            if let Err(e) = r {
                tracing::warn!("reaper thread: {e}");
            }
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Remove attempts older than the one before `latest` (the previous one stays for
/// `kubectl logs --previous`).
pub(super) fn prune(rt: &PodRuntime, uid: &str, attempts: &[Observed], latest: u32) {
    for o in attempts {
        if o.attempt + 1 < latest && !o.running() {
            match rt.runtime.remove(&o.id, true) {
                Ok(()) | Err(RuntimeError::NotFound(_)) => forget(rt, uid, &o.id),
                Err(e) => tracing::warn!("pod {uid}: remove old attempt {}: {e}", o.id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::PullPolicy;
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

    fn meta(name: &str) -> PodMeta {
        PodMeta {
            uid: "0b6f7a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b".into(),
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn runtime_names_are_valid_and_fit() {
        let n = runtime_name(&meta("web-7d4b9c"), "app", 3);
        assert_eq!(n, "k8s_app_web-7d4b9c_default_0b6f7a2e_3");
        assert!(gabang_runtime::valid_name(&n));
        let long = runtime_name(&meta(&"x".repeat(250)), &"c".repeat(63), 12);
        assert!(long.len() <= 128 && long.ends_with("_default_0b6f7a2e_12"));
        assert!(gabang_runtime::valid_name(&long));
    }

    fn plan(ep: Option<&[&str]>, cmd: Option<&[&str]>) -> ContainerPlan {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ContainerPlan {
            name: "c".into(),
            image: "i".into(),
            pull_policy: PullPolicy::IfNotPresent,
            entrypoint: ep.map(v),
            cmd: cmd.map(v),
            env: vec![],
            workdir: None,
            user: None,
            memory_limit: None,
            cpu_limit: None,
            mounts: vec![],
            tty: false,
            stdin: false,
        }
    }

    /// The argv the runtime will run, through its own ENTRYPOINT/CMD rules.
    fn run(p: &ContainerPlan) -> Vec<String> {
        let img = ImageConfigurationBuilder::default()
            .config(
                ConfigBuilder::default()
                    .entrypoint(vec!["/ep".to_owned(), "-x".to_owned()])
                    .cmd(vec!["def".to_owned()])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let (entrypoint, cmd) = argv(p, &img);
        let opts = RunOptions {
            entrypoint,
            cmd,
            ..Default::default()
        };
        gabang_runtime::plan_process(&img, &opts).unwrap().args
    }

    #[test]
    fn command_and_args_combine_with_the_image_as_kubernetes_says() {
        assert_eq!(run(&plan(None, None)), ["/ep", "-x", "def"]);
        assert_eq!(run(&plan(None, Some(&[]))), ["/ep", "-x", "def"]);
        assert_eq!(run(&plan(Some(&[]), None)), ["/ep", "-x", "def"]);
        assert_eq!(run(&plan(None, Some(&["a", "b"]))), ["/ep", "-x", "a", "b"]);
        assert_eq!(run(&plan(Some(&["sh", "-c"]), Some(&[]))), ["sh", "-c"]);
        assert_eq!(run(&plan(Some(&["sh", "-c"]), None)), ["sh", "-c"]);
        assert_eq!(
            run(&plan(Some(&["sh", "-c"]), Some(&["echo hi"]))),
            ["sh", "-c", "echo hi"]
        );
    }
}
