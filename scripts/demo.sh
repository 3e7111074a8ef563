#!/usr/bin/env bash
# The main job on the embedded defaults: install what is missing, build gabang (release),
# make a busybox base image, and walk the image path: import → list → inspect → history →
# tag → save (OCI and docker formats) → load into a fresh store → same image ID.
# Grows with each issue (build, run, registry, cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
echo "==> cargo build --release"
cargo build --release --quiet
G="$PWD/target/release/gabang"
export GABANG_ROOT=${GABANG_ROOT:-/var/lib/gabang}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

bash scripts/make-busybox-rootfs.sh "$work/busybox-rootfs.tar" >/dev/null
step "$G" import "$work/busybox-rootfs.tar" busybox:1 --change 'CMD ["sh"]'
step "$G" images
step "$G" image history busybox:1
step "$G" tag busybox:1 localhost:5000/bb:latest
step "$G" images
step "$G" save -o "$work/bb-oci.tar" busybox:1
step "$G" save --format docker -o "$work/bb-docker.tar" busybox:1
if command -v skopeo >/dev/null; then
  step skopeo inspect "oci-archive:$work/bb-oci.tar"
fi
# Load both archives into a second, empty store: the image ID (config digest) survives.
step env GABANG_ROOT="$work/other" "$G" load -i "$work/bb-oci.tar"
step env GABANG_ROOT="$work/other" "$G" load -i "$work/bb-docker.tar"
step env GABANG_ROOT="$work/other" "$G" images --no-trunc
id1=$("$G" image inspect busybox:1); id1=$(grep '"Id"' <<<"$id1")
id2=$(GABANG_ROOT="$work/other" "$G" image inspect busybox:1); id2=$(grep '"Id"' <<<"$id2")
[ "$id1" = "$id2" ] || { echo "image IDs differ: $id1 vs $id2" >&2; exit 1; }
echo
echo "OK: same image ID after save/load ($id1)"
