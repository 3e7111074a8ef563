#!/usr/bin/env bash
# gabang build vs docker build (classic builder), side by side in one run:
# cold build, no-op rebuild, rebuild after one source file changed; for a
# 6-step busybox Dockerfile and for one that COPYs a 256 MiB context.
#   benches/build.sh [path/to/gabang]   (default: target/release/gabang)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
gb=${1:-$here/target/release/gabang}
export DOCKER_BUILDKIT=0
work=$(mktemp -d /var/tmp/gbbench.XXXX)
root=$work/root
tag=gbbench$$
cleanup() {
  docker rmi -f $tag-small:1 $tag-big:1 $tag-base:1 >/dev/null 2>&1 || true
  docker builder prune -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
bash "$here/scripts/make-busybox-rootfs.sh" "$work/bb.tar" >/dev/null
"$gb" --root "$root" import "$work/bb.tar" $tag-base:1 >/dev/null
docker import "$work/bb.tar" $tag-base:1 >/dev/null

mkdir -p "$work/small/src" "$work/big/src"
for i in 1 2 3; do echo "file $i" >"$work/small/src/f$i.txt"; done
cat >"$work/small/Dockerfile" <<D
FROM $tag-base:1
ENV APP=/app
WORKDIR /app
COPY src/ /app/src/
RUN cat /app/src/*.txt > /app/all.txt
CMD ["cat", "/app/all.txt"]
D
head -c $((256 << 20)) /dev/urandom >"$work/big/src/blob.bin"
for i in 1 2 3; do echo "file $i" >"$work/big/src/f$i.txt"; done
sed "s/^FROM .*/FROM $tag-base:1/" "$work/small/Dockerfile" >"$work/big/Dockerfile"

t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }

# Each case runs ${RUNS:-5} times, gabang and docker alternating; the medians are compared.
runs=${RUNS:-5}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-8s %-10s %10s %10s %8s\n' context case gabang docker ratio
for c in small big; do
  for case in cold noop changed; do
    nc=""; [ $case = cold ] && nc="--no-cache"
    gs=(); ds=()
    for _ in $(seq "$runs"); do
      if [ $case = changed ]; then echo "changed $(date +%s%N)" >"$work/$c/src/f1.txt"; fi
      gs+=("$(t "$gb" --root "$root" build $nc -t $tag-$c:1 "$work/$c")")
      if [ $case = changed ]; then echo "changed $(date +%s%N)" >"$work/$c/src/f1.txt"; fi
      ds+=("$(t docker build $nc -t $tag-$c:1 "$work/$c")")
    done
    g=$(printf '%s\n' "${gs[@]}" | median)
    d=$(printf '%s\n' "${ds[@]}" | median)
    if [ $case = noop ]; then
      # A few ms each: `date` around one run is too coarse; hyperfine without a shell.
      hyperfine -N -w 3 -r 30 --export-json "$work/h.json" \
        "$gb --root $root build -t $tag-$c:1 $work/$c" "docker build -t $tag-$c:1 $work/$c" >/dev/null 2>&1
      read -r g d < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(r[0]["median"], r[1]["median"])' "$work/h.json")
    fi
    printf '%-8s %-10s %9.3fs %9.3fs %8.3f\n' $c $case "$g" "$d" "$(echo "$g / $d" | bc -l)"
  done
done
