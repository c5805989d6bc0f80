#!/usr/bin/env bash
# `npm run setup`: everything a fresh machine needs, idempotent. A warm run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Debian packages.
mapfile -t wanted < <(grep -vE '^\s*(#|$)' scripts/apt-packages.txt)
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. npm dependencies (only when package-lock.json changed since the last install).
stamp=node_modules/.superfluid-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# 3. Kubernetes binaries, built from the Go module proxy into ~/.cache/superfluid.
bash scripts/build-k8s-binaries.sh >/dev/null
bash scripts/build-kube-proxy.sh

# 4. Native parts: our unikernels and guest images.
if [ -f native/Makefile ]; then
  make -s -C native
fi
log "ready"
