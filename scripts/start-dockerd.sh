#!/usr/bin/env bash
# Start Debian's dockerd (an anchor for interop tests and benchmarks) if no engine answers.
# No bridge and no iptables: it must never route or NAT anything off this machine.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
command -v dockerd >/dev/null || { echo "dockerd missing (apt-get install docker.io)" >&2; exit 1; }
nohup dockerd --iptables=false --ip-masq=false --bridge=none >/var/log/gabang-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "dockerd did not start; see /var/log/gabang-dockerd.log" >&2
exit 1
