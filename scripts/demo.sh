#!/usr/bin/env bash
# The main job on the embedded defaults (state in /var/lib/gabang): install what is missing,
# build gabang (release), then walk the seed's whole path on one machine:
#   busybox base image → build the example image from its Dockerfile → run it and reach it
#   over HTTP → push it to gabang's own registry and pull it back → start the API server
#   and apply the example manifests with kubectl → show the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
echo "==> cargo build --release"
cargo build --release --quiet
G="$PWD/target/release/gabang"
export GABANG_ROOT=${GABANG_ROOT:-/var/lib/gabang}
work=$(mktemp -d)
pids=()
cleanup() {
  "$G" rm -f web-demo >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
wait_for() { # wait_for URL
  for _ in $(seq 1 100); do curl -ksf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo; echo "== 1. the base bag: busybox from Debian's busybox-static"
bash scripts/make-busybox-rootfs.sh "$work/busybox-rootfs.tar" >/dev/null
step "$G" import "$work/busybox-rootfs.tar" busybox:1 --change 'CMD ["sh"]'

echo; echo "== 2. build the example image (examples/web/Dockerfile): each step is a layer"
step "$G" build -t web:1 examples/web
step "$G" build -t web:1 examples/web          # unchanged: every step CACHED
step "$G" image history web:1
step "$G" images

echo; echo "== 3. open the bag: run it as a container and reach it over HTTP"
port=$(free_port)
step "$G" run -d --name web-demo -p "$port:80" web:1
wait_for "http://127.0.0.1:$port/"
step curl -s "http://127.0.0.1:$port/"
step "$G" ps
step "$G" rm -f web-demo

echo; echo "== 4. carry it: push to gabang's registry, pull it back"
reg=$(free_port)
"$G" registry serve --addr "127.0.0.1:$reg" >"$work/registry.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$reg/v2/"
step "$G" tag web:1 "localhost:$reg/web:1"
step "$G" push "localhost:$reg/web:1"
step "$G" rmi "localhost:$reg/web:1"
step "$G" pull "localhost:$reg/web:1"
step curl -s "http://127.0.0.1:$reg/v2/_catalog"

echo; echo "== 5. declare the desired state: the API server + kubectl apply"
api=$(free_port)
"$G" server --listen "127.0.0.1:$api" >"$work/server.log" 2>&1 &
pids+=($!)
wait_for "https://127.0.0.1:$api/healthz"
export KUBECONFIG="$GABANG_ROOT/cluster/admin.kubeconfig"
step kubectl apply -f examples/k8s/web.yaml
step kubectl get namespaces
step kubectl get deploy,svc -n shop -o wide
step kubectl scale deploy web -n shop --replicas 5
sleep 2   # the controllers create the ReplicaSet and its pods; the scheduler tries to place them
step kubectl get deploy,rs,pods -n shop -o wide
pod=$(kubectl get pods -n shop -o name | head -n 1)
[ -n "$pod" ] && step kubectl describe -n shop "$pod" | tail -n 5
echo
echo "(The cluster keeps the desired state: Deployment → ReplicaSet → 5 pods. No node has"
echo " joined yet, so the scheduler keeps them Pending and says why; the node agent that"
echo " runs them (gabang agent / gabang up) is the next issue.)"

echo; echo "== 6. build once, run anywhere: save/load into a second store keeps the image ID"
step "$G" save -o "$work/web-oci.tar" web:1
step env GABANG_ROOT="$work/other" "$G" load -i "$work/web-oci.tar"
id1=$("$G" image inspect web:1); id1=$(grep '"Id"' <<<"$id1")
id2=$(GABANG_ROOT="$work/other" "$G" image inspect web:1); id2=$(grep '"Id"' <<<"$id2")
[ "$id1" = "$id2" ] || { echo "image IDs differ: $id1 vs $id2" >&2; exit 1; }
echo; echo "OK: same image ID after save/load: $(tr -d ' ,' <<<"$id1")"
