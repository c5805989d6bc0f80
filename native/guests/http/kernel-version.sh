#!/usr/bin/env bash
# Prints the newest kernel version that has both /boot/vmlinuz-<ver> and its modules installed
# (the guest must load modules built for exactly the kernel it boots). KVER overrides.
set -euo pipefail
if [ -n "${KVER:-}" ]; then echo "$KVER"; exit 0; fi
for image in $(ls /boot/vmlinuz-* 2>/dev/null | sort -rV); do
  ver=${image#/boot/vmlinuz-}
  if [ -f "/lib/modules/$ver/modules.dep" ]; then echo "$ver"; exit 0; fi
done
echo "no /boot/vmlinuz-<ver> with /lib/modules/<ver> installed (apt-get install linux-image-amd64)" >&2
exit 1
