#!/bin/busybox sh
# Stage 1 of the emulated Xen node's dom0 (the /init of a tiny initrd): load the virtio + 9p +
# overlay modules, mount the host's / read-only over 9p under a tmpfs overlay, and switch_root into
# it. Everything after that (toolstack, network, exec agent) is stage 2, a script in the repo read
# through the 9p root, so changing it does not rebuild this initrd.
/bin/busybox mkdir -p /proc /sys /dev /lower /rw /newroot /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
exec >/dev/console 2>&1
say() { read -r up _ </proc/uptime; echo "superfluid-dom0: [${up}s] $*"; }
say "stage 1"
for m in $(cat /modules.order); do
  insmod "/modules/$m" || echo "superfluid-dom0: insmod $m failed"
done
say "modules loaded"
stage2=""
# cache=loose: the root is read-only and dom0 starts many programs from it (node's module resolution
# alone stats hundreds of paths); without a cache every lookup is a round trip to QEMU's 9p server.
# A node does not see host files that change after it read them (sf.rootcache=none turns it off).
rootcache=loose
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    sf.stage2=*) stage2="${arg#sf.stage2=}" ;;
    sf.rootcache=*) rootcache="${arg#sf.rootcache=}" ;;
  esac
done
if ! mount -t 9p -o "trans=virtio,version=9p2000.L,ro,msize=512000,cache=$rootcache" hostroot /lower; then
  echo "superfluid-dom0: FATAL cannot mount the host root over 9p"; sleep 5; poweroff -f
fi
mount -t tmpfs -o size=75% tmpfs /rw
mkdir -p /rw/upper /rw/work
if ! mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot; then
  echo "superfluid-dom0: FATAL overlay mount failed"; sleep 5; poweroff -f
fi
say "root mounted"
umount /proc
if [ -z "$stage2" ] || [ ! -f "/newroot$stage2" ]; then
  echo "superfluid-dom0: FATAL stage 2 script '$stage2' not found in the host root"; sleep 5; poweroff -f
fi
exec switch_root /newroot /bin/bash "$stage2"
