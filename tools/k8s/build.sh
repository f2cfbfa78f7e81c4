#!/usr/bin/env bash
# Build (or reuse) the local control plane: kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd and kwok from the Go modules pinned in go.mod, KServe's admission
# webhook from the module pinned in ../kserve-webhook/go.mod, plus the KServe and
# Prometheus-Operator CRDs read from their pinned Go modules (by crds.sh, which has its own
# cache: the unit tests need only the CRDs). Prints the cache directory.
#
#   AGENT_K8S_CACHE   root of the cache (default: ~/.cache/modelops-agent/k8s)
#
# A cached start only checks that the files are there; a cold build takes minutes. Runs into
# the same cache directory are serialized by a lock (flock on <dir>/.lock): a second run waits
# for the first, says so on stderr, and then finds the cache complete.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

# The version of the build commands below (go build flags, which files are installed where).
# It is part of the cache key instead of this file's hash, so editing comments, messages or the
# locking does not force a cold rebuild: bump it when a change alters what ends up in the cache.
recipe=2

k8s_version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' go.mod)
kwok_version=$(awk '$1=="sigs.k8s.io/kwok"{print $2; exit}' go.mod)
# shellcheck source=crds.env
source "$here/crds.env"
webhook=$here/../kserve-webhook
webhook_kserve=$(awk '$1=="github.com/kserve/kserve"{print $2; exit}' "$webhook/go.mod")
if [ "$webhook_kserve" != "$KSERVE_VERSION" ]; then
  echo "tools/kserve-webhook/go.mod pins kserve $webhook_kserve but crds.env says $KSERVE_VERSION: make them equal" >&2
  exit 1
fi
key=$({ cat go.mod go.sum crds.env cmd/etcd/main.go "$webhook"/go.mod "$webhook"/go.sum "$webhook"/main.go
        echo "recipe $recipe"; } | sha256sum | cut -c1-12)
root=${AGENT_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelops-agent/k8s}
dir="$root/$k8s_version-$key"
bins=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok kserve-webhook)

complete() {
  for b in "${bins[@]}"; do [ -x "$dir/bin/$b" ] || return 1; done
  [ -f "$dir/crds/.complete" ] || return 1
}

# Fast path, without the lock: every file lands by a rename and .complete is written last, so
# a complete-looking directory is complete.
if complete; then echo "$dir"; exit 0; fi

mkdir -p "$dir/bin" "$dir/crds"
if command -v flock >/dev/null; then
  exec 9>"$dir/.lock"
  if ! flock -n 9; then
    echo "another build.sh is building $dir: waiting for its lock ($dir/.lock)" >&2
    flock 9
  fi
  if complete; then
    echo "reusing $dir, completed by the other build" >&2
    echo "$dir"
    exit 0
  fi
  # Holding the lock, no other build is running here: a temporary directory is a killed build's.
  rm -rf "$dir"/.tmp.*
else
  echo "warning: flock not found; concurrent builds into $dir are not serialized" >&2
fi

# Everything is written into a private temporary directory next to its destination (same file
# system) and renamed into place; a build that dies leaves no half-written file behind.
tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
export CGO_ENABLED=0 GOFLAGS=-mod=mod
minor=$(echo "$k8s_version" | cut -d. -f2)
ver_pkg=k8s.io/component-base/version
ldflags="-s -w -X $ver_pkg.gitVersion=$k8s_version -X $ver_pkg.gitMajor=1 -X $ver_pkg.gitMinor=$minor"
ldflags+=" -X $ver_pkg.gitTreeState=clean -X $ver_pkg.buildDate=1970-01-01T00:00:00Z"
ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.Version=$kwok_version"
ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$k8s_version"

echo "building control plane $k8s_version into $dir (cold build: minutes)" >&2
for b in "${bins[@]}"; do
  [ -x "$dir/bin/$b" ] && continue
  if [ "$b" = kserve-webhook ]; then  # its own module: kserve's k8s.io and knative pins differ from ours
    echo "  go build github.com/kserve/kserve@$KSERVE_VERSION validator (tools/kserve-webhook)" >&2
    (cd "$webhook" && go build -trimpath -ldflags "-s -w" -o "$tmp/$b" .)
    mv -f "$tmp/$b" "$dir/bin/$b"
    continue
  fi
  case $b in
    etcd) pkg=./cmd/etcd ;;
    kwok) pkg=sigs.k8s.io/kwok/cmd/kwok ;;
    *) pkg=k8s.io/kubernetes/cmd/$b ;;
  esac
  echo "  go build $pkg" >&2
  go build -trimpath -ldflags "$ldflags" -o "$tmp/$b" "$pkg"
  mv -f "$tmp/$b" "$dir/bin/$b"
done

# The CRDs come from crds.sh (its own small cache, shared with the unit tests): copied here so
# that this directory is the whole local control plane.
crds=$(bash "$here/crds.sh" | tail -n 1)
for f in "$crds"/*.yaml "$crds/.complete"; do  # .complete last
  install -m 0644 "$f" "$tmp/${f##*/}"
  mv -f "$tmp/${f##*/}" "$dir/crds/${f##*/}"
done

echo "built in $(( $(date +%s) - start ))s; cache size $(du -sh "$dir" | cut -f1)" >&2
echo "$dir"
