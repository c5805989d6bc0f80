#!/bin/bash
# Stage 2 of the emulated Xen node's dom0, PID 1 after switch_root into the host's / (read-only 9p
# under a tmpfs overlay). Parameters come from the dom0 kernel command line (sf.KEY=VALUE), written
# by e2e/xen-node/index.ts. Order matters for boot time: the exec agent (node, ~4 s to start under
# emulation) is started first, in the background, while the toolstack comes up.
exec </dev/null
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/xen-4.17/bin
say() { local up; read -r up _ </proc/uptime 2>/dev/null; echo "superfluid-dom0: [${up:-?}s] $*"; }
fatal() { say "FATAL $*"; mkdir -p /run/superfluid && echo "$*" >/run/superfluid/failed; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mkdir -p /run/superfluid /run/lock /run/xen /run/xenstored
# Not /tmp: the host's /tmp shows through the overlay, and a checkout under /tmp (CI clones one
# there) must stay visible to dom0. Writes to /tmp land in the overlay's RAM upper layer anyway.
for d in /var/lib/xen /var/lib/xenstored /var/log/xen /var/log/xen/console; do
  mkdir -p "$d" && mount -t tmpfs tmpfs "$d"
done
mkdir -p /var/log/xen/console
exec >/dev/console 2>&1

declare -A sf
for arg in $(cat /proc/cmdline); do
  case "$arg" in sf.*=*) key="${arg%%=*}"; sf["${key#sf.}"]="${arg#*=}" ;; esac
done
name="${sf[name]:-xen-node}"
index="${sf[index]:-1}"
# The node's pod subnet and dom0's gateway address in it (e2e/xen-node/pod-network.ts picks them).
pod_cidr="${sf[pod_cidr]:-10.244.$index.0/24}"
pod_gw="${sf[pod_gw]:-10.244.$index.1/24}"
hostname "$name"
say "stage 2 for node $name (index $index)"

# The read-write share with the host (tests pass files both ways through it).
mkdir -p /mnt/host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none hostdir /mnt/host || fatal "cannot mount the host share"

# Network. eth0: QEMU user networking (host loopback is 10.0.2.2, forwards from host ports land on
# 10.0.2.15). eth1: the segment shared by the nodes of one test process (10.99.0.<index>/24; routes
# to the other nodes' pod subnets are added by the harness as nodes come and go). xenbr0: the bridge
# for guest vifs, this node's pod subnet ($pod_cidr, a /21 by default), dom0 is its first address.
modprobe virtio_net || fatal "cannot load virtio_net"
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 || fatal "eth0 setup failed"
echo "nameserver 10.0.2.3" >/run/superfluid/resolv.conf
mount --bind /run/superfluid/resolv.conf /etc/resolv.conf 2>/dev/null || true

# The exec agent: host connections arrive through a QEMU hostfwd on 10.0.2.15:${sf[agent_port]}.
# It starts in the background (node needs a few seconds under emulation) while the rest comes up.
if [ -n "${sf[node]:-}" ] && [ -n "${sf[agent]:-}" ]; then
  "${sf[node]}" "${sf[agent]}" --port "${sf[agent_port]:-7000}" >/var/log/superfluid-agent.log 2>&1 &
else
  fatal "no exec agent given (sf.node / sf.agent)"
fi
say "eth0 up, agent starting"

setup_bridges() {
  modprobe bridge || fatal "cannot load bridge"
  if ip link show eth1 >/dev/null 2>&1; then
    ip link set eth1 up && ip addr add "10.99.0.$index/24" dev eth1 || fatal "eth1 setup failed"
  fi
  ip link add xenbr0 type bridge && ip link set xenbr0 up && ip addr add "$pod_gw" dev xenbr0 || fatal "xenbr0 setup failed"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  # Pods reach the host (10.0.2.2) through dom0's eth0.
  iptables -t nat -A POSTROUTING -s "$pod_cidr" -o eth0 -j MASQUERADE || fatal "iptables MASQUERADE for pods failed"
  say "bridges up"
}
setup_bridges &
bridges=$!

# The Xen toolstack.
modprobe -a xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-netback xen-blkback xenfs || fatal "cannot load the Xen modules"
mount -t xenfs xenfs /proc/xen || fatal "cannot mount xenfs"
# XenStore: oxenstored unless sf.xenstored=xenstored (the C daemon slowed with hundreds of domains).
case "${sf[xenstored]:-oxenstored}" in
  xenstored) /usr/lib/xen-4.17/bin/xenstored --pid-file /run/xenstored.pid || fatal "xenstored failed" ;;
  *) /usr/lib/xen-4.17/bin/oxenstored --pid-file /run/xenstored.pid || fatal "oxenstored failed" ;;
esac
xen-init-dom0 || fatal "xen-init-dom0 failed"
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console || fatal "xenconsoled failed"
say "toolstack up"
wait "$bridges"

if [ ! -f /run/superfluid/failed ]; then
  touch /run/superfluid/toolstack-ready
  say "toolstack ready"
fi

# PID 1 must stay alive and reap orphans (bash reaps any child on SIGCHLD).
while :; do sleep 3600 & wait $!; done
