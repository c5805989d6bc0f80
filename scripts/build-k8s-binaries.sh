#!/usr/bin/env bash
# Builds the Kubernetes binaries the tests and the demo run, from the Go module proxy, into a cache
# outside the repo. No registry ships kube-apiserver for us, so we compile it; a warm run takes
# seconds because every binary is checked before anything is built.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
CRI_TOOLS_VERSION="${CRI_TOOLS_VERSION:-v1.36.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.7.0}"
CACHE="${SUPERFLUID_CACHE:-$HOME/.cache/superfluid}"
BIN="$CACHE/bin/$K8S_VERSION"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

mkdir -p "$BIN"
log() { printf '[k8s-binaries] %s\n' "$*" >&2; }
have() { for b in "$@"; do [ -x "$BIN/$b" ] || return 1; done; }

# k8s.io/kubernetes refers to its staging modules by relative replace directives, which only work
# inside its own tree. A wrapper module pins each staging module to the matching v0.X.Y instead.
build_kubernetes() {
  have etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl && return 0
  local work="$CACHE/src/kubernetes-$K8S_VERSION" minor="v0.${K8S_VERSION#v1.}"
  mkdir -p "$work"
  log "resolving k8s.io/kubernetes@$K8S_VERSION"
  local gomod
  gomod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module superfluid.dev/k8s-binaries"
    echo
    sed -n 's/^go \(.*\)/go \1/p' "$gomod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    grep -oE 'k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$gomod" |
      awk -v v="$minor" '{ print "replace " $1 " => " $1 " " v }'
  } >"$work/go.mod"
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  log "go mod tidy (downloads modules; first run takes a few minutes)"
  (cd "$work" && go mod tidy -e >/dev/null 2>"$work/tidy.log") || { cat "$work/tidy.log" >&2; return 1; }
  # etcd comes from the version kubernetes itself pins, so apiserver and etcd always agree.
  for target in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl etcd; do
    [ -x "$BIN/$target" ] && continue
    local pkg="k8s.io/kubernetes/cmd/$target"
    [ "$target" = etcd ] && pkg="go.etcd.io/etcd/server/v3"
    log "building $target (cold: several minutes on 2 cores)"
    (cd "$work" && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" -o "$BIN/$target.tmp" "$pkg")
    mv "$BIN/$target.tmp" "$BIN/$target"
  done
}

build_cri_tools() {
  have crictl critest && return 0
  local work="$CACHE/src/cri-tools-$CRI_TOOLS_VERSION"
  mkdir -p "$work"
  log "fetching sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION"
  local dir
  dir=$(cd "$work" && go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$work/tree" && cp -r "$dir" "$work/tree" && chmod -R u+w "$work/tree"
  # Module zips carry no vendor/ tree, so these resolve dependencies through the proxy (-mod=mod).
  log "building crictl"
  (cd "$work/tree" && go build -trimpath -o "$BIN/crictl" ./cmd/crictl)
  log "building critest (a compiled ginkgo test binary, as cri-tools' Makefile builds it)"
  (cd "$work/tree" && go test -c -trimpath -o "$BIN/critest" ./cmd/critest)
}

build_go_install() { # name module@version
  have "$1" && return 0
  log "building $1 from $2"
  GOBIN="$BIN" go install -trimpath "$2"
}

build_kubernetes
build_cri_tools
build_go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
build_go_install kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
log "binaries ready in $BIN"
echo "$BIN"
