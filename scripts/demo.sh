#!/usr/bin/env bash
# The main job on the embedded defaults (state in /var/lib/gabang): install what is missing,
# build gabang (release), then walk the seed's whole path on one machine:
#   busybox base image → build the example image from its Dockerfile → run it and reach it
#   over HTTP → `gabang up` (the whole cluster on this machine) → push it to the cluster's
#   registry and pull it back → kubectl apply the example Deployment, wait for Ready, reach
#   a pod over HTTP, show `get pods -o wide`, logs and exec → save/load keeps the image ID.
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
  # Take the example down (the agent stops the pods and releases their sandboxes) before
  # stopping the cluster; its state stays in $GABANG_ROOT for the next run.
  if [ -n "${KUBECONFIG:-}" ]; then
    kubectl delete deploy web -n shop --ignore-not-found >/dev/null 2>&1 || true
    kubectl wait --for=delete pod --all -n shop --timeout=90s >/dev/null 2>&1 || true
    kubectl delete -f examples/k8s/web.yaml --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
  fi
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

echo; echo "== 4. the whole cluster on this machine: gabang up (API server + controllers +"
echo "      scheduler + registry + node agent in one process, like k3s server)"
"$G" up --listen 127.0.0.1:6443 --registry 127.0.0.1:5000 >"$work/up.log" 2>&1 &
pids+=($!)
wait_for "https://127.0.0.1:6443/healthz"
wait_for "http://127.0.0.1:5000/v2/"
export KUBECONFIG="$GABANG_ROOT/cluster/admin.kubeconfig"
for _ in $(seq 1 100); do kubectl get nodes 2>/dev/null | grep -q ' Ready' && break; sleep 0.2; done
step kubectl get nodes -o wide

echo; echo "== 5. carry the bag: push to the cluster's registry, pull it back"
step "$G" tag web:1 localhost:5000/web:1
step "$G" push localhost:5000/web:1
step "$G" rmi localhost:5000/web:1
step "$G" pull localhost:5000/web:1
step curl -s http://127.0.0.1:5000/v2/_catalog

echo; echo "== 6. declare the desired state; the cluster makes it true and keeps it"
step kubectl apply -f examples/k8s/web.yaml
step kubectl rollout status deploy/web -n shop --timeout=180s
step kubectl get deploy,rs,svc -n shop
step kubectl get pods -n shop -o wide
ip=$(kubectl get pods -n shop -o jsonpath='{.items[0].status.podIP}')
pod=$(kubectl get pods -n shop -o jsonpath='{.items[0].metadata.name}')
step curl -s "http://$ip/"
step kubectl logs -n shop "$pod" --tail 3
step kubectl exec -n shop "$pod" -- cat /etc/hostname
echo; echo "(node = where a pod physically runs; namespace = where it logically belongs)"
step kubectl get pods -A -o custom-columns=NAMESPACE:.metadata.namespace,POD:.metadata.name,NODE:.spec.nodeName,IP:.status.podIP
echo; echo "-- delete a pod: the ReplicaSet makes a new one (desired state kept)"
step kubectl delete pod -n shop "$pod" --wait=false
step kubectl rollout status deploy/web -n shop --timeout=180s
step kubectl get pods -n shop -o wide

echo; echo "== 7. build once, run anywhere: save/load into a second store keeps the image ID"
step "$G" save -o "$work/web-oci.tar" web:1
step env GABANG_ROOT="$work/other" "$G" load -i "$work/web-oci.tar"
id1=$("$G" image inspect web:1); id1=$(grep '"Id"' <<<"$id1")
id2=$(GABANG_ROOT="$work/other" "$G" image inspect web:1); id2=$(grep '"Id"' <<<"$id2")
[ "$id1" = "$id2" ] || { echo "image IDs differ: $id1 vs $id2" >&2; exit 1; }
echo; echo "OK: same image ID after save/load: $(tr -d ' ,' <<<"$id1")"
