#!/bin/busybox sh
# /init of the tiny PV test guest (Debian's kernel + this busybox initramfs, see guest-image.ts).
# Prints a known line on its Xen console, brings up its vif with the address from the kernel
# command line (sf.ip=A.B.C.D/NN sf.gw=A.B.C.D) and serves HTTP on port 8080.
/bin/busybox mkdir -p /proc /sys /dev /www
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec >/dev/hvc0 2>&1 </dev/null
ip= ; gw= ; word=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    sf.ip=*) ip="${arg#sf.ip=}" ;;
    sf.gw=*) gw="${arg#sf.gw=}" ;;
    sf.word=*) word="${arg#sf.word=}" ;;
  esac
done
echo "SUPERFLUID-GUEST-UP ${word}"
for m in $(cat /modules.order); do insmod "/modules/$m"; done
if [ -n "$ip" ]; then
  ip link set lo up
  ip link set eth0 up && ip addr add "$ip" dev eth0 && { [ -z "$gw" ] || ip route add default via "$gw"; }
  echo "hello from ${word:-guest} at ${ip%/*}" >/www/index.html
  httpd -p 8080 -h /www
  echo "SUPERFLUID-GUEST-NET-UP ${ip}"
fi
while :; do sleep 3600; done
