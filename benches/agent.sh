#!/usr/bin/env bash
# The node agent, side by side with Docker Swarm in one run:
#   - a Deployment of N (default 100) busybox `sleep` replicas on one `gabang up` node:
#     apply → all Ready, and pod startup latency (bound → Ready, as a pod watch sees it) p50/p99;
#   - Docker Swarm on the same machine: `docker service create --replicas N` until converged;
#   - idle RSS of `gabang up` (no pods) and of a second, idle `gabang agent`.
#   benches/agent.sh [N]      (GABANG=path/to/gabang, default target/release/gabang)
#   PRE_SLEEP=s: idle time after a `sync`, before the apply and before Swarm's create (default 65).
#   This machine's ext4 has no journal: then every inode allocation skips, one by one, each inode
#   of its block group freed in the last 60 s (360 s while its inode-table block is dirty;
#   fs/ext4/ialloc.c recently_deleted). Without the wait, a run measures the deletes of the run
#   before it (a cleanup of 100 pods frees ~4000 inodes): 17% of the machine's CPU, 2% after.
# Runs in its own network namespace (bridges and ports stay off the host); removes its pods,
# processes, namespace and the swarm service, and leaves the swarm it joined.
set -euo pipefail
N=${1:-100}
here=$(cd "$(dirname "$0")/.." && pwd)
GABANG=${GABANG:-$here/target/release/gabang}
[ -x "$GABANG" ] || GABANG=$here/target/debug/gabang
# The pod watcher (crates/gabang-agent/examples/pod_latency.rs), built by:
#   cargo build --release -p gabang-agent --example pod_latency
LATENCY=${LATENCY:-$(dirname "$GABANG")/examples/pod_latency}
[ -x "$LATENCY" ] || { echo "build the pod_latency example first (see above)" >&2; exit 1; }
ns=gbbench-$$
tmp=$(mktemp -d /var/tmp/gbbench.XXXXXX)
up_pid=""
agent_pid=""
in_ns() { nsenter --net=/run/netns/$ns "$@"; }
k() { in_ns kubectl --kubeconfig "$tmp/root/cluster/admin.kubeconfig" "$@"; }
cleanup() {
  set +e
  if [ -n "$up_pid" ]; then
    k delete deployment --all --wait=false >/dev/null 2>&1
    for _ in $(seq 1 120); do
      [ -z "$(k get pods -o name 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null
  [ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null
  sleep 0.5
  for r in "$tmp/root" "$tmp/root2"; do
    for id in $("$GABANG" --root "$r" ps -aq --no-trunc 2>/dev/null); do
      "$GABANG" --root "$r" rm -f "$id" >/dev/null 2>&1
    done
  done
  docker service rm gbbench >/dev/null 2>&1
  [ "${swarm_joined:-0}" = 1 ] && docker swarm leave --force >/dev/null 2>&1
  ip netns del "$ns" 2>/dev/null
  if [ -n "${KEEP:-}" ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# Wait until the inodes freed so far no longer slow inode allocation (see PRE_SLEEP above).
quiet_fs() { sync; sleep "${PRE_SLEEP:-65}"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

ip netns add "$ns"
ip -n "$ns" link set lo up
bash "$here/scripts/make-busybox-rootfs.sh" "$tmp/bb.tar" >/dev/null
for r in root root2; do
  "$GABANG" --root "$tmp/$r" import "$tmp/bb.tar" busybox:1 \
    -c 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["sh"]' >/dev/null
done

GABANG_LOG=${AGENT_LOG:-warn} nsenter --net=/run/netns/$ns "$GABANG" --root "$tmp/root" up --listen 127.0.0.1:6443 --registry 127.0.0.1:5000 \
  --node-name n1 --pod-cidr 10.42.100.0/24 --workers "${WORKERS:-4}" >"$tmp/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 120); do
  k get node n1 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True && break
  sleep 0.5
done
quiet_fs
up_idle=$(rss_kib "$up_pid")

cat >"$tmp/deploy.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleepers}
spec:
  replicas: $N
  selector: {matchLabels: {app: sleepers}}
  template:
    metadata: {labels: {app: sleepers}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: sleep
        image: busybox:1
        imagePullPolicy: IfNotPresent
        command: ["sleep", "3600"]
EOF

# A pod watch timestamps, per pod, when it was first seen bound and first seen Ready.
nsenter --net=/run/netns/$ns "$LATENCY" "$tmp/root/cluster" "$N" >"$tmp/latency.out" 2>&1 &
lat_pid=$!
for _ in $(seq 1 100); do grep -q watching "$tmp/latency.out" && break; sleep 0.1; done
# Where the CPU goes: the `gabang up` process (API server, controllers, agent) vs the machine.
proc_cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
machine_cpu() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
up_cpu0=$(proc_cpu "$up_pid"); all_cpu0=$(machine_cpu)
t0=$(date +%s.%N)
# PERF=file: a machine-wide `perf record` (PERF_ARGS, default -g) over the apply -> Ready window.
[ -n "${PERF:-}" ] && { perf record -a ${PERF_ARGS:--g} -o "$PERF" -- sleep "${PERF_SECONDS:-3}" >/dev/null 2>&1 & }
k apply -f "$tmp/deploy.yaml" >/dev/null
# One watching client (as a user would wait), not a kubectl poll loop: each kubectl run
# costs ~50 ms of CPU, which this 2-core machine would otherwise take from the pods.
k rollout status deployment/sleepers --timeout=300s >/dev/null
t1=$(date +%s.%N)
up_cpu1=$(proc_cpu "$up_pid"); all_cpu1=$(machine_cpu)
hz=$(getconf CLK_TCK)
echo "CPU during apply -> Ready: gabang up process $(echo "($up_cpu1 - $up_cpu0) / $hz" | bc -l | cut -c1-5) s of $(echo "($all_cpu1 - $all_cpu0) / $hz" | bc -l | cut -c1-5) s used on the machine"
wait "$lat_pid" || true
up_busy=$(rss_kib "$up_pid")
gabang_s=$(echo "$t1 - $t0" | bc -l)
read -r p50 p99 pmax nlat < <(tail -1 "$tmp/latency.out")

k delete deployment sleepers --wait=false >/dev/null
for _ in $(seq 1 240); do
  [ -z "$(k get pods -o name 2>/dev/null)" ] && break
  sleep 0.5
done

# An idle second agent (another root and node name) joined to the same API server.
nsenter --net=/run/netns/$ns "$GABANG" --root "$tmp/root2" agent --kubeconfig "$tmp/root/cluster/admin.kubeconfig" \
  --node-name n2 --pod-cidr 10.42.101.0/24 --port 10251 >"$tmp/agent2.log" 2>&1 &
agent_pid=$!
sleep 10
agent_idle=$(rss_kib "$agent_pid")
up_after=$(rss_kib "$up_pid")

# Docker Swarm, same machine, same busybox rootfs.
swarm_s=nan
if [ -z "${SKIP_SWARM:-}" ] && bash "$here/scripts/start-dockerd.sh"; then
  if docker info 2>/dev/null | grep -q 'Swarm: active'; then
    echo "docker is already in a swarm: not touching it" >&2
  elif docker swarm init --advertise-addr 127.0.0.1 >/dev/null; then
    swarm_joined=1
    docker import "$tmp/bb.tar" gbbench-busybox:1 >/dev/null
    quiet_fs # as gabang had, now that its pods were deleted
    s0=$(date +%s.%N)
    docker service create --quiet --detach=false --name gbbench --replicas "$N" \
      --network host --stop-grace-period 1s gbbench-busybox:1 sleep 3600 >/dev/null
    s1=$(date +%s.%N)
    swarm_s=$(echo "$s1 - $s0" | bc -l)
    docker service rm gbbench >/dev/null
    for _ in $(seq 1 240); do
      [ -z "$(docker ps -q --filter label=com.docker.swarm.service.name=gbbench)" ] && break
      sleep 0.5
    done
    docker swarm leave --force >/dev/null
    swarm_joined=0
    docker image rm gbbench-busybox:1 >/dev/null 2>&1 || true
  fi
fi

printf '\n%-48s %10s\n' "measure ($N replicas, $(nproc) cores)" "value"
printf '%-48s %9.2fs\n' "gabang up: apply -> $N Ready" "$gabang_s"
printf '%-48s %9ss\n' "docker swarm: service create -> $N running" "$(printf '%.2f' "$swarm_s" 2>/dev/null || echo "$swarm_s")"
if [ "$swarm_s" != nan ]; then
  printf '%-48s %9.2fx\n' "gabang / swarm time" "$(echo "$gabang_s / $swarm_s" | bc -l)"
fi
printf '%-48s %9ss (n=%s)\n' "pod startup p50 (bound -> Ready)" "$p50" "$nlat"
printf '%-48s %9ss\n' "pod startup p99 (bound -> Ready)" "$p99"
printf '%-48s %9ss\n' "pod startup max (bound -> Ready)" "$pmax"
printf '%-48s %7d MiB\n' "gabang up idle RSS (no pods)" $((up_idle / 1024))
printf '%-48s %7d MiB\n' "gabang up RSS with $N pods" $((up_busy / 1024))
printf '%-48s %7d MiB\n' "gabang up RSS after the pods are gone" $((up_after / 1024))
printf '%-48s %7d MiB\n' "gabang agent idle RSS" $((agent_idle / 1024))
