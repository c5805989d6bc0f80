#!/usr/bin/env bash
# kube-proxy for the e2e cluster's Xen nodes (Services by ClusterIP inside dom0), built in the work
# tree scripts/build-k8s-binaries.sh prepared (same module pins, same Go build cache). Warm: instant.
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-v1.36.3}"
CACHE="${SUPERFLUID_CACHE:-$HOME/.cache/superfluid}"
BIN="$CACHE/bin/$K8S_VERSION"
work="$CACHE/src/kubernetes-$K8S_VERSION"
[ -x "$BIN/kube-proxy" ] && exit 0
[ -f "$work/go.mod" ] || { echo "build-kube-proxy: run scripts/build-k8s-binaries.sh first ($work/go.mod missing)" >&2; exit 1; }
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
printf '[k8s-binaries] building kube-proxy\n' >&2
(cd "$work" && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" -o "$BIN/kube-proxy.tmp" k8s.io/kubernetes/cmd/kube-proxy)
mv "$BIN/kube-proxy.tmp" "$BIN/kube-proxy"
