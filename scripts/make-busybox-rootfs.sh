#!/usr/bin/env bash
# Make a busybox root filesystem tarball from Debian's busybox-static: the base image of
# every example and test (no registry is reachable from these machines).
#   scripts/make-busybox-rootfs.sh OUT.tar
set -euo pipefail
out=${1:?usage: make-busybox-rootfs.sh OUT.tar}
bb=$(command -v busybox)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"/{bin,etc,tmp,root,var/www,proc,sys,dev}
chmod 1777 "$dir/tmp"
cp "$bb" "$dir/bin/busybox"
for app in $("$bb" --list); do
  [ "$app" = busybox ] || ln -s busybox "$dir/bin/$app"
done
cat >"$dir/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
www:x:33:33:www:/var/www:/bin/sh
P
cat >"$dir/etc/group" <<'G'
root:x:0:
www:x:33:
nogroup:x:65534:
G
echo '<h1>hello from a gabang bag</h1>' >"$dir/var/www/index.html"
tar --numeric-owner --owner=0 --group=0 -C "$dir" -cf "$out" .
echo "$out"
