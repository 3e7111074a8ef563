//! `PodRuntime` against the real kernel (run as root): sandboxes on a per-test bridge, busybox
//! containers, restarts, probes, volumes, OOM, teardown and adoption. Every test cleans up
//! its pods, netns, veths, mounts, cgroups and bridge through the `Node` guard.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use gabang_agent::pods::{PodRuntime, SyncOutcome};
use serde_json::json;

fn pod_ip(out: &SyncOutcome) -> String {
    out.status.pod_ip.clone().unwrap()
}

fn ready_and_running(out: &SyncOutcome) -> bool {
    phase(out) == "Running" && condition(out, "Ready") == "True"
}

#[test]
fn httpd_pod_runs_answers_on_its_pod_ip_is_adopted_and_released() {
    let node = Node::new();
    let mut p = pod(
        "web",
        json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "httpd", "image": IMAGE,
            "command": ["httpd", "-f", "-p", "80", "-h", "/var/www"]}]}),
    );
    let uid = uid(&p);
    let mut events = Vec::new();
    let out = node.sync_until(&mut p, 30, |o| {
        events.extend(o.events.clone());
        ready_and_running(o)
    });
    let ip = pod_ip(&out);
    assert!(ip.starts_with(&format!("10.244.{}.", node.cfg.pod_cidr.0.octets()[2])));
    assert_eq!(out.status.host_ip.as_deref(), Some("192.0.2.10"));
    for ty in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "PodScheduled",
    ] {
        assert_eq!(condition(&out, ty), "True", "{ty}");
    }
    let c = cstatus(&out, "httpd");
    assert!(running(&c) && c.ready && c.started == Some(true));
    assert_eq!(c.restart_count, 0);
    assert!(c.image_id.starts_with("sha256:"));
    for reason in ["Pulled", "Created", "Started"] {
        assert!(events.iter().any(|e| e.1 == reason), "{reason}: {events:?}");
    }
    let body = eventually_get(&ip, 80, "/");
    assert!(body.contains("hello from a pod"), "{body}");

    // The pod's /etc files.
    let id = runtime_id(&c);
    let (_, hosts) = node.exec(&id, &["cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{ip}\tweb")), "{hosts}");
    assert_eq!(node.exec(&id, &["hostname"]).1.trim(), "web");

    // Syncing again changes nothing: same container, same startTime.
    let again = node.sync(&p);
    assert_eq!(cstatus(&again, "httpd").container_id, c.container_id);
    assert_eq!(again.status.start_time, out.status.start_time);
    assert_eq!(node.containers_of(&uid).len(), 1);

    // A second runtime on the same root (an agent restart) adopts the pod.
    let rt2 = PodRuntime::new(node.cfg.clone()).unwrap();
    let out2 = rt2.sync(&p, &node.refs).unwrap();
    assert_eq!(cstatus(&out2, "httpd").container_id, c.container_id);
    assert_eq!(out2.status.start_time, out.status.start_time);
    assert_eq!(pod_ip(&out2), ip);
    assert_eq!(node.containers_of(&uid).len(), 1);
    let locals = rt2.local_pods().unwrap();
    assert!(locals.iter().any(|l| l.uid == uid && l.name == "web"));

    // Terminate releases everything.
    let netns = format!("/run/netns/gabang-{}", &uid[..12]);
    let veth = format!("gbv{}", &uid[..11]);
    assert!(Path::new(&netns).exists());
    assert!(link_exists(&veth));
    rt2.terminate(&uid, Duration::from_secs(2)).unwrap();
    assert!(!Path::new(&netns).exists(), "netns left");
    assert!(!link_exists(&veth), "veth left");
    assert!(!node.rt.network().allocations().unwrap().contains_key(&uid));
    assert!(node.containers_of(&uid).is_empty());
    assert!(!node.pod_dir(&uid).exists());
    for cg in pod_cgroup_dirs(&uid) {
        assert!(!cg.exists(), "{} left", cg.display());
    }
    assert!(http_get(&ip, 80, "/").is_err());
    // Idempotent.
    rt2.terminate(&uid, Duration::from_secs(2)).unwrap();
    node.rt.terminate(&uid, Duration::from_secs(2)).unwrap();
}

fn eventually_get(ip: &str, port: u16, path: &str) -> String {
    let mut body = String::new();
    assert!(
        eventually(20, || match http_get(ip, port, path) {
            Ok(b) => {
                body = b;
                true
            }
            Err(_) => false,
        }),
        "no HTTP answer from {ip}:{port}"
    );
    body
}

fn link_exists(name: &str) -> bool {
    std::process::Command::new("ip")
        .args(["link", "show", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The pod's cgroup dir in every hierarchy present.
fn pod_cgroup_dirs(uid: &str) -> Vec<std::path::PathBuf> {
    let rel = format!("gabang/pods/{uid}");
    let mut v = vec![Path::new("/sys/fs/cgroup").join(&rel)];
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        v.push(e.path().join(&rel));
    }
    v
}

#[test]
fn two_containers_talk_over_localhost_and_share_empty_dirs() {
    let node = Node::new();
    let mut p = pod(
        "duo",
        json!({"terminationGracePeriodSeconds": 0,
          "volumes": [{"name": "shared", "emptyDir": {}},
                      {"name": "mem", "emptyDir": {"medium": "Memory"}}],
          "containers": [
            {"name": "server", "image": IMAGE,
             "command": ["httpd", "-f", "-p", "8080", "-h", "/data"],
             "volumeMounts": [{"name": "shared", "mountPath": "/data"}]},
            {"name": "client", "image": IMAGE,
             "command": ["sh", "-c",
               "echo hi-from-client > /data/x; until wget -q -O /data/got http://127.0.0.1:8080/x; do sleep 0.2; done; echo m > /mem/y; sleep 3600"],
             "volumeMounts": [{"name": "shared", "mountPath": "/data"},
                              {"name": "mem", "mountPath": "/mem"}]}]}),
    );
    let uid = uid(&p);
    let out = node.sync_until(&mut p, 30, ready_and_running);
    assert!(running(&cstatus(&out, "server")) && running(&cstatus(&out, "client")));
    let vol = node.pod_dir(&uid).join("volumes");
    assert!(
        eventually(20, || std::fs::read_to_string(vol.join("shared/got"))
            .is_ok_and(|s| s.trim() == "hi-from-client")),
        "the client did not fetch the file over localhost"
    );
    assert!(eventually(10, || vol.join("mem/y").exists()));
    let mem = vol.join("mem");
    assert!(is_mounted(&mem), "memory emptyDir is not a tmpfs mount");
    node.rt.terminate(&uid, Duration::ZERO).unwrap();
    assert!(!is_mounted(&mem), "tmpfs left mounted");
    assert!(!node.pod_dir(&uid).exists());
}

#[test]
fn init_containers_run_in_order_before_app_containers() {
    let node = Node::new();
    let mut p = pod(
        "inits",
        json!({"terminationGracePeriodSeconds": 0,
          "volumes": [{"name": "work", "emptyDir": {}}],
          "initContainers": [
            {"name": "one", "image": IMAGE, "command": ["sh", "-c", "sleep 0.3; echo one >> /work/log"],
             "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
            {"name": "two", "image": IMAGE, "command": ["sh", "-c", "echo two >> /work/log"],
             "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
          "containers": [
            {"name": "app", "image": IMAGE, "command": ["sh", "-c", "echo app >> /work/log; sleep 3600"],
             "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]}),
    );
    let uid = uid(&p);
    let first = node.sync(&p);
    assert_eq!(phase(&first), "Pending");
    assert_eq!(condition(&first, "Initialized"), "False");
    assert_eq!(waiting_reason(&cstatus(&first, "app")), "PodInitializing");
    assert!(running(&cstatus(&first, "one")));
    let out = node.sync_until(&mut p, 30, ready_and_running);
    assert_eq!(condition(&out, "Initialized"), "True");
    for name in ["one", "two"] {
        let t = cstatus(&out, name).state.unwrap().terminated.unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    }
    let log = node.pod_dir(&uid).join("volumes/work/log");
    assert!(eventually(10, || std::fs::read_to_string(&log)
        .is_ok_and(|s| s.lines().count() == 3)));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\napp\n");
    // Init containers are not run again.
    node.sync(&p);
    assert_eq!(node.containers_of(&uid).len(), 3);
}

#[test]
fn a_failing_init_container_with_restart_never_fails_the_pod() {
    let node = Node::new();
    let mut p = pod(
        "badinit",
        json!({"restartPolicy": "Never",
          "initContainers": [{"name": "boom", "image": IMAGE, "command": ["sh", "-c", "exit 4"]}],
          "containers": [{"name": "app", "image": IMAGE, "command": ["sleep", "3600"]}]}),
    );
    let uid = uid(&p);
    let out = node.sync_until(&mut p, 20, |o| phase(o) == "Failed");
    let t = cstatus(&out, "boom").state.unwrap().terminated.unwrap();
    assert_eq!(t.exit_code, 4);
    // The app container never ran.
    assert_eq!(node.containers_of(&uid).len(), 1);
}

#[test]
fn crashing_containers_back_off_or_fail_per_restart_policy() {
    let node = Node::new();
    let mut always = pod(
        "crash",
        json!({"containers": [{"name": "c", "image": IMAGE, "command": ["sh", "-c", "exit 3"]}]}),
    );
    let mut never = pod(
        "once",
        json!({"restartPolicy": "Never",
               "containers": [{"name": "c", "image": IMAGE, "command": ["sh", "-c", "exit 7"]}]}),
    );
    let out = node.sync_until(&mut never, 20, |o| phase(o) == "Failed");
    let t = cstatus(&out, "c").state.unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (7, Some("Error")));
    assert_eq!(cstatus(&out, "c").restart_count, 0);
    assert_eq!(node.containers_of(&uid(&never)).len(), 1);

    // Always: restarted at once, then after 10 s, then backs off 20 s.
    let mut messages = Vec::new();
    let out = node.sync_until(&mut always, 40, |o| {
        let c = cstatus(o, "c");
        if waiting_reason(&c) == "CrashLoopBackOff" {
            let m = c
                .state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .message
                .clone();
            messages.push(m.unwrap_or_default());
        }
        c.restart_count >= 2 && waiting_reason(&c) == "CrashLoopBackOff"
    });
    let c = cstatus(&out, "c");
    assert_eq!(phase(&out), "Running");
    assert_eq!(c.restart_count, 2);
    let last = c.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 3);
    assert!(messages.iter().any(|m| m.starts_with("back-off 10s restarting failed container=c pod=crash_default(")), "{messages:?}");
    assert!(
        messages.last().unwrap().starts_with("back-off 20s"),
        "{messages:?}"
    );
    assert!(out
        .requeue_after
        .is_some_and(|d| d <= Duration::from_secs(20)));
    // Attempt 0 was removed, attempts 1 (previous) and 2 kept.
    let mut attempts: Vec<String> = node
        .containers_of(&uid(&always))
        .iter()
        .map(|c| c.labels[gabang_agent::labels::ATTEMPT].clone())
        .collect();
    attempts.sort();
    assert_eq!(attempts, ["1", "2"]);
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let node = Node::new();
    let mut p = pod(
        "live",
        json!({"terminationGracePeriodSeconds": 1,
          "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"],
            "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]},
                              "periodSeconds": 1, "failureThreshold": 2}}]}),
    );
    let mut events = Vec::new();
    let out = node.sync_until(&mut p, 40, |o| {
        events.extend(o.events.clone());
        cstatus(o, "c").restart_count >= 1 && running(&cstatus(o, "c"))
    });
    assert_eq!(phase(&out), "Running");
    assert!(
        events
            .iter()
            .any(|e| e.1 == "Unhealthy" && e.2.starts_with("Liveness probe failed")),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.1 == "Killing"), "{events:?}");
    let last = cstatus(&out, "c").last_state.unwrap().terminated.unwrap();
    assert_ne!(last.exit_code, 0);
}

#[test]
fn readiness_gates_ready_and_http_probes_reach_the_pod() {
    let node = Node::new();
    let mut p = pod(
        "ready",
        json!({"terminationGracePeriodSeconds": 0,
          "containers": [
            {"name": "gated", "image": IMAGE, "command": ["sleep", "3600"],
             "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}},
            {"name": "web", "image": IMAGE, "command": ["httpd", "-f", "-p", "8081", "-h", "/var/www"],
             "ports": [{"name": "http", "containerPort": 8081}],
             "readinessProbe": {"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1},
             "livenessProbe": {"tcpSocket": {"port": 8081}, "periodSeconds": 1}}]}),
    );
    let out = node.sync_until(&mut p, 30, |o| {
        cstatus(o, "web").ready && running(&cstatus(o, "gated"))
    });
    assert_eq!(phase(&out), "Running");
    assert!(!cstatus(&out, "gated").ready);
    assert_eq!(condition(&out, "Ready"), "False");
    assert_eq!(condition(&out, "ContainersReady"), "False");
    let id = runtime_id(&cstatus(&out, "gated"));
    assert_eq!(node.exec(&id, &["touch", "/tmp/ready"]).0, 0);
    let out = node.sync_until(&mut p, 20, ready_and_running);
    assert!(cstatus(&out, "gated").ready);
    assert_eq!(cstatus(&out, "web").restart_count, 0);
}

#[test]
fn config_map_volumes_update_in_place_and_a_missing_one_blocks_the_container() {
    let node = Node::new();
    node.refs
        .set_config_map("settings", &[("greeting", "hello")]);
    let spec = |cm: &str| {
        json!({"terminationGracePeriodSeconds": 0,
          "volumes": [{"name": "cfg", "configMap": {"name": cm}}],
          "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"],
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}]})
    };
    let mut p = pod("cfg", spec("settings"));
    let out = node.sync_until(&mut p, 30, ready_and_running);
    let id = runtime_id(&cstatus(&out, "c"));
    assert_eq!(node.exec(&id, &["cat", "/etc/cfg/greeting"]).1, "hello");
    node.refs
        .set_config_map("settings", &[("greeting", "bonjour")]);
    node.sync(&p);
    assert_eq!(node.exec(&id, &["cat", "/etc/cfg/greeting"]).1, "bonjour");

    let mut missing = pod("nocfg", spec("absent"));
    let out = node.sync(&missing);
    assert_eq!(phase(&out), "Pending");
    let c = cstatus(&out, "c");
    assert_eq!(waiting_reason(&c), "CreateContainerConfigError");
    assert!(
        c.state
            .unwrap()
            .waiting
            .unwrap()
            .message
            .unwrap()
            .contains("absent"),
        "the message names the configMap"
    );
    assert!(node.containers_of(&uid(&missing)).is_empty());
    node.refs.set_config_map("absent", &[("k", "v")]);
    node.sync_until(&mut missing, 30, ready_and_running);
}

#[test]
fn a_memory_limit_is_enforced_and_reported_as_oom_killed() {
    let node = Node::new();
    let mut p = pod(
        "hog",
        json!({"restartPolicy": "Never",
          "containers": [{"name": "c", "image": IMAGE, "command": ["tail", "/dev/zero"],
            "resources": {"limits": {"memory": "16Mi"}}}]}),
    );
    let out = node.sync_until(&mut p, 60, |o| phase(o) == "Failed");
    let t = cstatus(&out, "c").state.unwrap().terminated.unwrap();
    assert_eq!(t.reason.as_deref(), Some("OOMKilled"), "{t:?}");
    assert_eq!(t.exit_code, 137);
    assert_eq!(out.status.qos_class.as_deref(), Some("Burstable"));
}

#[test]
fn image_pull_failures_wait_with_err_image_pull_then_back_off() {
    let node = Node::new();
    let p = pod(
        "nopull",
        json!({"containers": [{"name": "c", "image": "127.0.0.1:1/missing:1"}]}),
    );
    let out = node.sync(&p);
    let c = cstatus(&out, "c");
    assert_eq!(waiting_reason(&c), "ErrImagePull");
    assert!(c
        .state
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap()
        .contains("127.0.0.1:1/missing:1"));
    let out = node.sync(&p);
    assert_eq!(waiting_reason(&cstatus(&out, "c")), "ImagePullBackOff");
    assert!(out.requeue_after.is_some());
    assert_eq!(phase(&out), "Pending");
}

#[test]
fn a_half_made_sandbox_is_cleaned_and_made_again() {
    let node = Node::new();
    let mut p = pod(
        "phoenix",
        json!({"terminationGracePeriodSeconds": 0,
               "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]}),
    );
    let uid = uid(&p);
    // What a crash between "netns made" and "sandbox.json written" leaves behind.
    let dir = node.pod_dir(&uid);
    std::fs::create_dir_all(dir.join("volumes/old")).unwrap();
    std::fs::write(dir.join("stale"), "x").unwrap();
    let mnt = dir.join("volumes/old");
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    node.rt.network().attach(&uid, &[]).unwrap();
    let out = node.sync_until(&mut p, 30, ready_and_running);
    assert!(!is_mounted(&mnt), "stale mount left");
    assert!(!dir.join("stale").exists(), "stale file left");
    assert!(dir.join("sandbox.json").exists());
    let ip = pod_ip(&out);
    let id = runtime_id(&cstatus(&out, "c"));
    let (_, addr) = node.exec(&id, &["ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&ip), "{addr}");
}
