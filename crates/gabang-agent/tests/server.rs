//! The logs/exec endpoint behind the real API server, driven by real kubectl (v1.32) against
//! real containers: the API server (gabang-apiserver) proxies `pods/log` and `pods/exec` to the
//! agent endpoint of the pod's Node, which finds the runtime container by its labels.
//! Containers are made here with the agent's labels (no pod runtime needed); a guard removes
//! them even when an assertion fails.

mod endpoint_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use endpoint_support::{eventually, Cluster, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_through_the_api_server() {
    let node = Node::new();
    let old = node.run("web", "app", 0, "echo old-1; echo old-2");
    eventually("the first attempt to exit", || node.exited(&old));
    let app = node.run(
        "web",
        "app",
        1,
        "echo one; echo two; echo three; exec sleep 1000",
    );
    let side = node.run(
        "web",
        "side",
        0,
        "echo side-out; echo side-err >&2; exec sleep 1000",
    );
    eventually("app's output", || node.log(&app).contains("three"));
    eventually("side's output", || node.log(&side).contains("side-out"));
    let c = Cluster::start(&node).await;
    c.pod("web", &["app", "side"]);

    assert_eq!(c.ok(&["logs", "web", "-c", "app"]), "one\ntwo\nthree\n");
    // No -c: kubectl picks the first container.
    assert_eq!(c.ok(&["logs", "web"]), "one\ntwo\nthree\n");
    let side_log = c.ok(&["logs", "web", "-c", "side"]);
    assert!(
        side_log.contains("side-out\n") && side_log.contains("side-err\n"),
        "{side_log}"
    );
    assert_eq!(c.ok(&["logs", "web", "-c", "app", "--tail=1"]), "three\n");
    let ts = c.ok(&["logs", "web", "-c", "app", "--tail=2", "--timestamps"]);
    let lines: Vec<&str> = ts.lines().collect();
    assert_eq!(lines.len(), 2, "{ts}");
    for (l, want) in lines.iter().zip(["two", "three"]) {
        let (t, text) = l.split_once(' ').unwrap();
        assert_eq!(text, want);
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{l}");
    }
    assert_eq!(
        c.ok(&["logs", "web", "-c", "app", "--previous"]),
        "old-1\nold-2\n"
    );
    assert_eq!(
        c.ok(&["logs", "web", "-c", "app", "--limit-bytes=5"]),
        "one\nt"
    );
    let e = c.fails(&["logs", "web", "-c", "side", "--previous"]);
    assert!(
        e.contains("previous terminated container \"side\" in pod \"web\" not found"),
        "{e}"
    );
    let e = c.fails(&["logs", "web", "-c", "nope"]);
    assert!(e.contains("container nope is not valid for pod web"), "{e}");
    let e = c.fails(&["logs", "missing"]);
    assert!(e.contains("pods \"missing\" not found"), "{e}");
    // A pod not bound to a node.
    let f = c.write(
        "free.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: free\nspec:\n  containers:\n  - {name: a, image: busybox:test}\n",
    );
    c.ok(&["apply", "-f", &f]);
    let e = c.fails(&["logs", "free"]);
    assert!(e.contains("pod free does not have a host assigned"), "{e}");

    // -f streams until the container exits; the container waits for a file made by exec.
    let job = node.run(
        "job",
        "main",
        0,
        "echo start; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo end",
    );
    eventually("job's output", || node.log(&job).contains("start"));
    c.pod("job", &["main"]);
    let mut follow = c
        .kubectl()
        .args(["logs", "-f", "job"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "start\n");
    c.ok(&["exec", "job", "--", "touch", "/tmp/go"]);
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "end\n");
    line.clear();
    assert_eq!(out.read_line(&mut line).unwrap(), 0, "EOF after the exit");
    assert!(follow.wait().unwrap().success());

    // Discovery lists the subresources.
    let res = c.ok(&["get", "--raw", "/api/v1"]);
    assert!(
        res.contains("\"pods/log\"") && res.contains("\"pods/exec\""),
        "{res}"
    );
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_through_the_api_server() {
    let node = Node::new();
    let app = node.run("web", "app", 0, "exec sleep 1000");
    let c = Cluster::start(&node).await;
    c.pod("web", &["app"]);
    eventually("app to run", || {
        node.rt.list(false).unwrap().iter().any(|s| s.id == app)
    });

    let hostname = node.rt.inspect(&app).unwrap()["Config"]["Hostname"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.ok(&["exec", "web", "--", "cat", "/etc/hostname"]).trim(),
        hostname
    );
    // stdout and stderr arrive on their own channels.
    let out = c.run(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2",
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-err\n");

    // The exit code comes back through the status channel.
    let out = c.run(&["exec", "web", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // stdin, closed at EOF (protocol v5).
    let mut child = c
        .kubectl()
        .args(["exec", "-i", "web", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    // A terminal: kubectl -t needs one, so run it under script(1), with a terminal size the
    // process must see. (The runtime's exec shim copies the size to the process's terminal
    // just after starting it, so the process waits until it has one.)
    let cmd = format!(
        "stty cols 123 rows 45; KUBECONFIG={} kubectl exec -it web -- sh -c 'test -t 0 && test -t 1 && echo in-tty; for i in $(seq 200); do stty size 2>/dev/null && break; sleep 0.05; done'",
        c.api.kubeconfig.display()
    );
    // script's input stays open (no EOF typed at the terminal) until the command is done.
    let mut script = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .current_dir(c.dir.path())
        .spawn()
        .unwrap();
    let keep_open = script.stdin.take();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut script.stdout.take().unwrap(), &mut text).unwrap();
    drop(keep_open);
    assert!(script.wait().unwrap().success(), "{text}");
    // The terminal's line discipline turns \n into \r\n.
    assert!(text.contains("in-tty\r\n"), "{text:?}");
    assert!(text.contains("45 123\r\n"), "{text:?}");

    // Errors.
    let e = c.fails(&["exec", "web", "-c", "nope", "--", "true"]);
    assert!(e.contains("container nope is not valid for pod web"), "{e}");
    let out = c.run(&["exec", "web", "--", "no-such-binary"]);
    assert!(!out.status.success());

    // The endpoint itself only answers the API server's token.
    let path = "/containerLogs/default/web/app";
    assert_eq!(c.curl_endpoint(None, path).0, 401);
    assert_eq!(c.curl_endpoint(Some("wrong"), path).0, 401);
    assert_eq!(c.curl_endpoint(Some(&c.api.token), path).0, 200);
    let (code, body) = c.curl_endpoint(Some(&c.api.token), "/containerLogs/default/web/nope");
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("container \"nope\" in pod \"web\" not found"),
        "{body}"
    );
    let (code, body) = c.curl_endpoint(
        Some(&c.api.token),
        "/exec/default/web/app?command=true&stdout=1",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("websocket"), "{body}");
    c.api.shutdown().await;
}
