//! `kubectl exec pod -- true` through the API server and the agent endpoint, side by side with
//! `docker exec <busybox container> true` (the anchor), `kubectl get pod` (kubectl's own
//! start-up + one API call) and the runtime's exec shim alone, in one hyperfine run.
//!
//!     scripts/start-dockerd.sh
//!     cargo bench -p gabang-agent --bench exec
//!
//! Needs hyperfine, kubectl, docker (dockerd running) and busybox-static; root.

#[path = "../tests/endpoint_support/mod.rs"]
mod endpoint_support;

use std::path::Path;
use std::process::Command;

use endpoint_support::{eventually, Cluster, Node};

const DOCKER_IMAGE: &str = "gbsrv-busybox:bench";
const DOCKER_CONTAINER: &str = "gbsrv-exec-bench";

/// Removes the docker container and image, also when the bench fails.
struct DockerGuard;

impl Drop for DockerGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", DOCKER_CONTAINER])
            .output();
        let _ = Command::new("docker").args(["rmi", DOCKER_IMAGE]).output();
    }
}

fn must(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-busybox-rootfs.sh");
    must(Command::new("bash").arg(&script).arg(&tar));
    let _docker = DockerGuard;
    must(
        Command::new("docker")
            .arg("import")
            .arg(&tar)
            .arg(DOCKER_IMAGE),
    );
    must(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        DOCKER_CONTAINER,
        "--network",
        "none",
        DOCKER_IMAGE,
        "sleep",
        "100000",
    ]));

    let node = Node::new();
    let app = node.run("web", "app", 0, "exec sleep 100000");
    eventually("the container to run", || {
        node.rt.list(false).unwrap().iter().any(|s| s.id == app)
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(Cluster::start(&node));
    cluster.pod("web", &["app"]);
    cluster.ok(&["exec", "web", "--", "true"]);

    let kubeconfig = cluster.api.kubeconfig.display().to_string();
    let json = tmp.path().join("hyperfine.json");
    let kubectl_exec = format!("kubectl --kubeconfig {kubeconfig} exec web -- true");
    let kubectl_get = format!("kubectl --kubeconfig {kubeconfig} get pod web");
    let docker_exec = format!("docker exec {DOCKER_CONTAINER} true");
    let spec = gabang_runtime::ExecSpec {
        args: vec!["true".into()],
        ..Default::default()
    };
    let shim = node.rt.exec_command(&app, &spec).unwrap();
    let shim_exec = std::iter::once(shim.get_program())
        .chain(shim.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    must(&mut node.rt.exec_command(&app, &spec).unwrap());
    let status = Command::new("hyperfine")
        .args(["-N", "--warmup", "3", "--runs", "30", "--export-json"])
        .arg(&json)
        .args([&kubectl_exec, &docker_exec, &kubectl_get, &shim_exec])
        .env("HOME", cluster.dir.path())
        .env("GABANG_LOG", "warn,libcgroups=error")
        .status()
        .expect("hyperfine runs");
    assert!(status.success());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let results = report["results"].as_array().cloned().unwrap_or_default();
    let mean = |i: usize| results[i]["mean"].as_f64().unwrap_or(f64::NAN) * 1000.0;
    let median = |i: usize| results[i]["median"].as_f64().unwrap_or(f64::NAN) * 1000.0;
    println!();
    println!(
        "kubectl exec (gabang API server → agent): mean {:.1} ms, median {:.1} ms",
        mean(0),
        median(0)
    );
    println!(
        "docker exec (anchor):                     mean {:.1} ms, median {:.1} ms",
        mean(1),
        median(1)
    );
    println!(
        "kubectl get pod (kubectl + 1 API call):   mean {:.1} ms, median {:.1} ms",
        mean(2),
        median(2)
    );
    println!(
        "runtime exec shim alone:                  mean {:.1} ms, median {:.1} ms",
        mean(3),
        median(3)
    );
    println!(
        "ratio kubectl exec / docker exec: {:.2}x (mean)",
        mean(0) / mean(1)
    );
    rt.block_on(cluster.api.shutdown());
}
