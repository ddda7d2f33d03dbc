#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and the kubelet at a pinned release from the
# Go module proxy, once each, into $KARCHDEV_CACHE/kube-<version>/. k8s.io/kubernetes maps its
# k8s.io/* modules to ./staging, which a module download does not have, so a throwaway module
# replaces each of them with its published v0.x release.
set -euo pipefail
KUBE_VERSION=1.37.2
: "${KARCHDEV_CACHE:=$HOME/.cache/karch}"
out="$KARCHDEV_CACHE/kube-$KUBE_VERSION"
cmds=()
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
  [[ -x $out/$c ]] || cmds+=("$c")
done
((${#cmds[@]} == 0)) && exit 0

log() { printf 'kube: %s\n' "$*" >&2; }
log "building ${cmds[*]} v$KUBE_VERSION (about 6 minutes each on 2 cores, once)"
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
{
  printf '//go:build tools\n\npackage tools\n\nimport (\n'
  for c in "${cmds[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
  printf ')\n'
} >tools.go
GOFLAGS=-mod=mod go mod tidy >&2
# A module build reports v0.0.0-master; the kubelet registers its version with the node, and
# the version-skew checks read it.
v=k8s.io/component-base/version
ldflags="-X $v.gitVersion=v$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=${minor%%.*} -X $v.gitTreeState=clean"
mkdir -p "$out"
for c in "${cmds[@]}"; do
  go build -ldflags "$ldflags" -o "$out/$c.tmp" "k8s.io/kubernetes/cmd/$c"
  mv "$out/$c.tmp" "$out/$c"
  log "built $out/$c"
done
