#!/usr/bin/env bash
# build-initramfs.sh <kernel-version> <init-binary> <output.cpio.gz>
# Packs the http guest's initramfs: the static init, /sbin/{poweroff,halt,reboot} pointing at it,
# the NIC driver modules of <kernel-version> listed in modules.txt with their dependencies, and
# /etc/modules.order saying what to load for each driver. No device nodes, so no root needed.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin" # modprobe, for users whose PATH lacks sbin
here=$(cd "$(dirname "$0")" && pwd)
kver=$1 init=$2 out=$3
[ -x "$init" ] || { echo "build-initramfs: $init is not an executable" >&2; exit 1; }
[ -d "/lib/modules/$kver" ] || { echo "build-initramfs: no /lib/modules/$kver" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage" "$out.tmp"' EXIT
mkdir -p "$stage"/{dev,proc,sys,etc,sbin,lib/modules}
cp "$init" "$stage/init"
for name in poweroff halt reboot; do ln -s /init "$stage/sbin/$name"; done

: >"$stage/etc/modules.order"
while read -r driver; do
  case "$driver" in ''|'#'*) continue ;; esac
  # modprobe prints "insmod <path>" for every module in load order (dependencies first).
  paths=$(modprobe -S "$kver" --show-depends "$driver" | awk '$1 == "insmod" { print $2 }')
  [ -n "$paths" ] || { echo "build-initramfs: $driver: no module for $kver (built in?)" >&2; exit 1; }
  files=()
  for path in $paths; do
    cp "$path" "$stage/lib/modules/"
    files+=("$(basename "$path")")
  done
  echo "$driver: ${files[*]}" >>"$stage/etc/modules.order"
done <"$here/modules.txt"

# Same inputs, same bytes: fixed mtimes, sorted names, numeric owner 0.
find "$stage" -exec touch -h -d @0 {} +
(cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
  cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) | gzip -9n >"$out.tmp"
mv "$out.tmp" "$out"
