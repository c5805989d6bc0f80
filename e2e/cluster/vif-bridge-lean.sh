#!/bin/sh
# Installed as /etc/xen/scripts/vif-bridge in the dom0 of the e2e cluster's emulated nodes only (its
# tmpfs overlay; the host's file is untouched). libxl still runs it as the vif hotplug script, with
# the command in $1 and `vif` and `XENBUS_PATH` in the environment; it does what Debian's
# vif-bridge does for a PV vif with anti-spoofing off (Debian disables handle_iptable anyway):
# bridge MAC and MTU, join the bridge, up, report "connected". Debian's script sources five helper
# files and runs some thirty processes (logger, flock, xenstore-read per key); in an emulated dom0
# on a loaded 2-core machine that outlasted libxl's hotplug timeout on every try ("killing execution
# of /etc/xen/scripts/vif-bridge online because of timeout"). This one runs three.
case "$1" in
  online | add)
    bridge=$(xenstore-read "$XENBUS_PATH/bridge") || bridge=xenbr0
    read -r mtu <"/sys/class/net/$bridge/mtu"
    if ip link set dev "$vif" address fe:ff:ff:ff:ff:ff mtu "$mtu" master "$bridge" up; then
      exec xenstore-write "$XENBUS_PATH/hotplug-status" connected
    fi
    xenstore-write "$XENBUS_PATH/hotplug-error" "vif-bridge (e2e): $vif did not join $bridge" "$XENBUS_PATH/hotplug-status" error
    exit 1
    ;;
  offline | remove)
    ip link set dev "$vif" down nomaster 2>/dev/null
    exit 0
    ;;
esac
exit 0
