#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager at a pinned release from the Go module
# proxy, once, into $KARCHDEV_CACHE/kube-<version>/. k8s.io/kubernetes maps its k8s.io/* modules
# to ./staging, which a module download does not have, so a throwaway module replaces each
# of them with its published v0.x release.
set -euo pipefail
KUBE_VERSION=1.37.2
: "${KARCHDEV_CACHE:=$HOME/.cache/karch}"
out="$KARCHDEV_CACHE/kube-$KUBE_VERSION"
[[ -x $out/kube-apiserver && -x $out/kube-controller-manager ]] && exit 0

log() { printf 'kube: %s\n' "$*" >&2; }
log "building kube-apiserver and kube-controller-manager v$KUBE_VERSION (7 to 13 minutes on 2 cores, once)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init karch-kube-build >/dev/null 2>&1
modfile=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
minor=${KUBE_VERSION#1.}
go mod edit -require="k8s.io/kubernetes@v$KUBE_VERSION"
# Every "k8s.io/x => ./staging/src/k8s.io/x" becomes "k8s.io/x => k8s.io/x v0.<minor>".
grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$modfile" | awk '{print $1}' | while read -r m; do
  go mod edit -replace="$m=$m@v0.$minor"
done
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
GO
GOFLAGS=-mod=mod go mod tidy >&2
mkdir -p "$out.tmp"
go build -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -o "$out.tmp/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
rm -rf "$out" && mv "$out.tmp" "$out"
log "built into $out"
