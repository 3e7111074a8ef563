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
    // The agent compiled the default seccomp program when it started (before any pod), so
    // the shims of a first burst of pods load it instead of each compiling it.
    let programs = std::fs::read_dir(node.cfg.root.join("seccomp"))
        .expect("seccomp cache made at agent start")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "bpf"))
        .count();
    assert_eq!(programs, 1);
    let mut p = pod(
        "web",
        json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "httpd", "image": IMAGE,
            "command": ["httpd", "-f", "-p", "80", "-h", "/var/www"]}]}),
    );
    let uid = uid(&p);
    // The image is on the node and a start is synchronous: one step makes the pod Running
    // and (without a readiness probe) Ready.
    let out = node.sync(&p);
    assert!(ready_and_running(&out), "{:?}", out.status);
    let events = out.events.clone();
    p.status = Some(out.status.clone());
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
    // The veth pair goes with the netns, which the kernel tears down in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while link_exists(&veth) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
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
fn failing_liveness_and_startup_probes_restart_the_container() {
    let node = Node::new();
    let mut p = pod(
        "live",
        json!({"terminationGracePeriodSeconds": 1,
          "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"],
            "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]},
                              "periodSeconds": 1, "failureThreshold": 2}},
            {"name": "s", "image": IMAGE, "command": ["sleep", "3600"],
            "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]},
                              "periodSeconds": 1, "failureThreshold": 2},
            "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]}),
    );
    let mut events = Vec::new();
    let mut saw_unstarted = false;
    let out = node.sync_until(&mut p, 40, |o| {
        events.extend(o.events.clone());
        let s = cstatus(o, "s");
        if running(&s) && s.restart_count == 0 {
            // Until the startup probe succeeds: not started, not ready.
            assert!(!s.ready);
            saw_unstarted |= s.started == Some(false);
        }
        cstatus(o, "c").restart_count >= 1
            && running(&cstatus(o, "c"))
            && s.restart_count >= 1
            && running(&s)
    });
    assert!(saw_unstarted);
    assert!(
        events
            .iter()
            .any(|e| e.1 == "Unhealthy" && e.2.starts_with("Startup probe failed")),
        "{events:?}"
    );
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
            "resources": {"limits": {"memory": "16Mi"}}},
            {"name": "d", "image": IMAGE, "command": ["true"],
            "resources": {"limits": {"memory": "32Mi"}}}]}),
    );
    let out = node.sync(&p);
    // The pod cgroup holds the sum of the containers' limits.
    let rel = format!("gabang/pods/{}", uid(&p));
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(&rel)
        .join("memory.limit_in_bytes");
    let v2 = Path::new("/sys/fs/cgroup").join(&rel).join("memory.max");
    let limit = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .unwrap();
    assert_eq!(limit.trim(), (48u64 << 20).to_string());
    p.status = Some(out.status);
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

#[test]
fn host_path_volumes_are_refused_unless_the_node_allows_them() {
    let node = Node::new();
    let p = pod(
        "hostpath",
        json!({"volumes": [{"name": "h", "hostPath": {"path": "/etc"}}],
          "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"],
            "volumeMounts": [{"name": "h", "mountPath": "/host-etc"}]}]}),
    );
    let out = node.sync(&p);
    let c = cstatus(&out, "c");
    assert_eq!(waiting_reason(&c), "CreateContainerError");
    let msg = c.state.unwrap().waiting.unwrap().message.unwrap();
    assert!(msg.contains("spec.volumes[0]"), "{msg}");
    assert!(node.containers_of(&uid(&p)).is_empty());
    assert_eq!(phase(&out), "Pending");
}

#[test]
fn concurrent_syncs_never_duplicate_and_pods_get_distinct_addresses() {
    let node = Node::new();
    let pods: Vec<_> = (0..4)
        .map(|i| {
            pod(
                &format!("many-{i}"),
                json!({"terminationGracePeriodSeconds": 0,
                   "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]}),
            )
        })
        .collect();
    // Three workers race on every pod.
    let outs: Vec<SyncOutcome> = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .flat_map(|p| (0..3).map(move |_| p))
            .map(|p| s.spawn(|| node.sync(p)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(outs.iter().all(|o| phase(o) == "Running"));
    let mut ips = Vec::new();
    for p in &pods {
        assert_eq!(node.containers_of(&uid(p)).len(), 1, "duplicated container");
        ips.push(pod_ip(&node.sync(p)));
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), pods.len(), "{ips:?}");
}

#[test]
fn host_network_pods_use_the_node_network() {
    let mut node = Node::new();
    // A node whose address is loopback, so the test reaches the pod without routes.
    node.cfg.host_ip = "127.0.0.1".into();
    node.rt = PodRuntime::new(node.cfg.clone()).unwrap();
    let port = 20000 + (std::process::id() % 20000) as u16;
    let p = pod(
        "hostnet",
        json!({"hostNetwork": true, "terminationGracePeriodSeconds": 0,
          "containers": [{"name": "c", "image": IMAGE,
            "command": ["httpd", "-f", "-p", format!("127.0.0.1:{port}"), "-h", "/var/www"],
            "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1}}]}),
    );
    let mut p = p;
    let out = node.sync_until(&mut p, 30, ready_and_running);
    assert_eq!(pod_ip(&out), "127.0.0.1");
    let body = eventually_get("127.0.0.1", port, "/");
    assert!(body.contains("hello from a pod"), "{body}");
    assert!(!Path::new(&format!("/run/netns/gabang-{}", &uid(&p)[..12])).exists());
    node.rt.terminate(&uid(&p), Duration::ZERO).unwrap();
    assert!(http_get("127.0.0.1", port, "/").is_err());
}

#[test]
fn an_exhausted_pod_cidr_leaves_the_pod_pending_with_an_event() {
    let mut node = Node::new();
    // A /30 has room for one pod (.2); the second one cannot get an address.
    node.cfg.pod_cidr.1 = 30;
    node.rt = PodRuntime::new(node.cfg.clone()).unwrap();
    let spec = json!({"terminationGracePeriodSeconds": 0,
        "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]});
    let first = node.sync(&pod("fits", spec.clone()));
    assert_eq!(phase(&first), "Running");
    let p = pod("nofit", spec);
    let out = node.sync(&p);
    assert_eq!(phase(&out), "Pending");
    assert_eq!(condition(&out, "PodReadyToStartContainers"), "False");
    assert_eq!(waiting_reason(&cstatus(&out, "c")), "ContainerCreating");
    assert!(out.status.pod_ip.is_none());
    assert!(out.requeue_after.is_some());
    assert!(
        out.events
            .iter()
            .any(|e| e.1 == "FailedCreatePodSandBox" && e.2.contains("exhausted")),
        "{:?}",
        out.events
    );
    assert!(node.containers_of(&uid(&p)).is_empty());
}

/// Run by `an_agent_killed_with_sigkill_leaves_its_pods_running_and_adoptable` in a child
/// process: one agent that makes a pod and then is killed.
#[test]
#[ignore = "helper process of the kill -9 test"]
fn child_agent_for_kill_test() {
    let Ok(pod_json) = std::env::var("GBPODS_CHILD_POD") else {
        return;
    };
    let env = |k: &str| std::env::var(k).unwrap();
    let (ip, prefix) = env("GBPODS_CHILD_CIDR")
        .split_once('/')
        .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
        .unwrap();
    let cfg = gabang_agent::pods::PodRuntimeConfig {
        root: env("GBPODS_CHILD_ROOT").into(),
        shim_exe: shim_exe(),
        shim_prefix_args: vec![],
        node_name: "node-a".into(),
        host_ip: "192.0.2.10".into(),
        pod_cidr: (ip, prefix),
        bridge: env("GBPODS_CHILD_BRIDGE"),
        allow_host_path: false,
    };
    let rt = PodRuntime::new(cfg).unwrap();
    let p: k8s_openapi::api::core::v1::Pod = serde_json::from_str(&pod_json).unwrap();
    let out = rt.sync(&p, &Refs::default()).unwrap();
    println!("synced {}", cstatus(&out, "httpd").container_id.unwrap());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn an_agent_killed_with_sigkill_leaves_its_pods_running_and_adoptable() {
    use std::io::BufRead;
    let node = Node::new();
    let p = pod(
        "survivor",
        json!({"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "httpd", "image": IMAGE,
            "command": ["httpd", "-f", "-p", "80", "-h", "/var/www"]}]}),
    );
    let (cidr_ip, prefix) = node.cfg.pod_cidr;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_agent_for_kill_test",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GBPODS_CHILD_POD", serde_json::to_string(&p).unwrap())
        .env("GBPODS_CHILD_ROOT", &node.cfg.root)
        .env("GBPODS_CHILD_BRIDGE", &node.cfg.bridge)
        .env("GBPODS_CHILD_CIDR", format!("{cidr_ip}/{prefix}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first_id = loop {
        let line = lines.next().expect("child agent ended").unwrap();
        // libtest may print the test's name on the same line first.
        if let Some((_, id)) = line.split_once("synced ") {
            break id.trim().to_owned();
        }
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // A new agent on the same root adopts the pod: the container kept running (its shim
    // outlived the agent), nothing is made twice.
    let rt = PodRuntime::new(node.cfg.clone()).unwrap();
    let out = rt.sync(&p, &node.refs).unwrap();
    let c = cstatus(&out, "httpd");
    assert_eq!(c.container_id.as_deref(), Some(first_id.as_str()));
    assert!(running(&c) && c.restart_count == 0, "{c:?}");
    assert_eq!(node.containers_of(&uid(&p)).len(), 1);
    let body = eventually_get(&pod_ip(&out), 80, "/");
    assert!(body.contains("hello from a pod"));
    rt.terminate(&uid(&p), Duration::ZERO).unwrap();
}
