#!/bin/sh
# A minimal libxl vif hotplug script: puts the guest's vif on the bridge named in its xl config.
# Debian's /etc/xen/scripts/vif-bridge starts dozens of processes; in an emulated dom0 each exec
# costs ~1 s, so it runs past libxl's hotplug timeout and `xl create` fails with "unable to add vif
# devices". This one execs two programs. Use with vif = [ "bridge=<br>,script=<this file>" ].
# libxl passes the action as $1 and the device in $vif / $XENBUS_PATH.
case "$1" in
online | add)
	bridge=$(xenstore-read "$XENBUS_PATH/bridge") || exit 1
	exec ip link set dev "$vif" master "$bridge" up
	;;
*)
	# offline/remove: the vif is being destroyed with the domain, which takes it off the bridge.
	exit 0
	;;
esac
