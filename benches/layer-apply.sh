#!/usr/bin/env bash
# Benchmark: apply a ~256 MiB layer (plain, gzip, zstd) with gabang, side by side in one run
# with `umoci raw unpack` (same OCI layer), GNU tar, and `docker load` when dockerd runs.
# Reports mean times and MB/s of uncompressed tar; ratios are what to read (machines are shared).
#   benches/layer-apply.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-256}
bash scripts/install-deps.sh
command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine umoci >/dev/null
command -v umoci >/dev/null || apt-get install -y -qq umoci >/dev/null
cargo build --release --quiet
G="$PWD/target/release/gabang"
w=$(mktemp -d /var/tmp/gabang-bench.XXXX)
trap 'rm -rf "$w"' EXIT

# A rootfs-like tree: real files from /usr up to SIZE_MIB.
python3 - "$w/src" "$size_mib" <<'PY'
import os, shutil, sys
dst, limit = sys.argv[1], int(sys.argv[2]) << 20
total = 0
for base in ("/usr/lib", "/usr/share", "/usr/bin", "/usr/libexec"):
    for root, dirs, files in os.walk(base):
        dirs.sort(); files.sort()
        for f in files:
            p = os.path.join(root, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            s = os.path.getsize(p)
            if total + s > limit:
                continue
            t = os.path.join(dst, os.path.relpath(p, "/"))
            os.makedirs(os.path.dirname(t), exist_ok=True)
            shutil.copy2(p, t)
            total += s
        if total >= limit * 0.99:
            break
print(f"source tree: {total/2**20:.0f} MiB")
PY

declare -A tarsize
for c in none gzip zstd; do
  "$G" layer create "$w/src" -o "$w/layer.$c" --compression "$c" > "$w/info.$c"
  tarsize[$c]=$(awk '/^tar/{print $2}' "$w/info.$c")
  # an OCI layout holding just this layer, for umoci
  python3 - "$w" "$c" <<'PY'
import hashlib, json, os, sys, shutil
w, c = sys.argv[1], sys.argv[2]
info = dict(l.split(None, 1) for l in open(f"{w}/info.{c}").read().splitlines())
lay = f"{w}/oci-{c}"
os.makedirs(f"{lay}/blobs/sha256", exist_ok=True)
def put(b):
    d = hashlib.sha256(b).hexdigest(); open(f"{lay}/blobs/sha256/{d}", "wb").write(b); return "sha256:" + d, len(b)
ld = info["digest"].strip()
os.link(f"{w}/layer.{c}", f"{lay}/blobs/sha256/{ld.split(':')[1]}")
mt = {"none": "application/vnd.oci.image.layer.v1.tar", "gzip": "application/vnd.oci.image.layer.v1.tar+gzip", "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}[c]
cd, cs = put(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [info["diff_id"].strip()]}}).encode())
md, ms = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
  "layers": [{"mediaType": mt, "digest": ld, "size": int(info["size"])}]}).encode())
open(f"{lay}/index.json", "w").write(json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))
open(f"{lay}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
done

have_docker=0
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  have_docker=1
fi

for c in none gzip zstd; do
  case $c in none) tflag="";; gzip) tflag="-z";; zstd) tflag="--zstd";; esac
  cmds=(-n "gabang layer apply" "$G layer apply $w/layer.$c $w/out")
  # umoci 0.4 (Debian) cannot read zstd layers: include it only where it works.
  if rm -rf "$w/out" && umoci --log error raw unpack --image "$w/oci-$c:bench" "$w/out" >/dev/null 2>&1; then
    cmds+=(-n "umoci raw unpack" "umoci --log error raw unpack --image $w/oci-$c:bench $w/out")
  else
    echo "(umoci cannot unpack $c layers here; left out)"
  fi
  cmds+=(-n "GNU tar -x" "mkdir -p $w/out && tar $tflag -xf $w/layer.$c -C $w/out")
  echo
  echo "=== layer compression: $c  (uncompressed tar $((tarsize[$c] / 1048576)) MiB, blob $(stat -c %s "$w/layer.$c" | awk '{printf "%d", $1/1048576}') MiB)"
  hyperfine --style basic --warmup 1 --runs "${RUNS:-5}" --prepare "rm -rf $w/out; sync" \
    --export-json "$w/h.$c.json" "${cmds[@]}" >/dev/null
  python3 - "$w/h.$c.json" "${tarsize[$c]}" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]; n = int(sys.argv[2])
base = res[0]["mean"]
print(f"{'tool':22} {'mean s':>8} {'min s':>8} {'MB/s':>8} {'vs gabang':>10}")
for r in res:
    print(f"{r['command']:22} {r['mean']:8.3f} {r['min']:8.3f} {n/r['mean']/1e6:8.0f} {r['mean']/base:9.2f}x")
PY
done
if [ $have_docker = 1 ]; then
  echo
  echo "=== docker load (dockerd running): same layer as a docker-archive"
  "$G" --root "$w/groot" import "$w/layer.none" bench/docker:1 >/dev/null
  "$G" --root "$w/groot" save --format docker -o "$w/docker.tar" bench/docker:1
  hyperfine --style basic --runs 3 --prepare "docker rmi -f bench/docker:1 >/dev/null 2>&1 || true" \
    -n "docker load" "docker load -q -i $w/docker.tar" \
    -n "gabang load" "rm -rf $w/lroot && $G --root $w/lroot load -q -i $w/docker.tar"
fi
