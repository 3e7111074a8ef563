#!/usr/bin/env bash
# Install what gabang's build, tests, demo and benchmarks need on a Debian machine (as root).
# Idempotent: installs only what is missing.
set -euo pipefail

need_pkgs=()
want() { # want CMD PKG
  command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2")
}
want busybox busybox-static
want skopeo skopeo
want protoc protobuf-compiler
want etcd etcd-server
want pkg-config pkg-config
want curl curl
want nft nftables
want ip iproute2
dpkg -s libseccomp-dev >/dev/null 2>&1 || need_pkgs+=(libseccomp-dev)
# the runtime's escape tests build a static C probe
want gcc gcc
dpkg -s libc6-dev >/dev/null 2>&1 || need_pkgs+=(libc6-dev)
# busybox from busybox-static must be the static one (tests copy it into images)
if command -v busybox >/dev/null 2>&1 && ! file -L "$(command -v busybox)" 2>/dev/null | grep -q static; then
  need_pkgs+=(busybox-static)
fi
want file file
want dockerd docker.io
want hyperfine hyperfine
want umoci umoci
want openssl openssl
want python3 python3
[ -x /usr/bin/docker-registry ] || need_pkgs+=(docker-registry)

if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "==> apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# The API server's tests drive real clients: kubectl and the python `kubernetes` package.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "==> kubectl missing: installing Debian's kubernetes-client"
  apt-get install -y -qq kubernetes-client >/dev/null 2>&1 || echo "warning: kubectl not installable; API tests will fail" >&2
fi
if ! python3 -c 'import kubernetes' >/dev/null 2>&1; then
  echo "==> pip install kubernetes"
  python3 -m pip install -q kubernetes
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install a Rust toolchain (rustup) first" >&2
  exit 1
fi
