#!/usr/bin/env bash
# Build (or reuse) the local control plane: kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd and kwok from the Go modules pinned in go.mod, plus the KServe and
# Prometheus-Operator CRDs read from their pinned Go modules. Prints the cache directory.
#
#   AGENT_K8S_CACHE   root of the cache (default: ~/.cache/modelops-agent/k8s)
#
# A cached start only checks that the files are there; a cold build takes minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

k8s_version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' go.mod)
kwok_version=$(awk '$1=="sigs.k8s.io/kwok"{print $2; exit}' go.mod)
# shellcheck source=crds.env
source "$here/crds.env"
key=$(cat go.mod go.sum crds.env build.sh cmd/etcd/main.go | sha256sum | cut -c1-12)
root=${AGENT_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelops-agent/k8s}
dir="$root/$k8s_version-$key"
bins=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok)

complete() {
  for b in "${bins[@]}"; do [ -x "$dir/bin/$b" ] || return 1; done
  [ -f "$dir/crds/.complete" ] || return 1
}

if complete; then echo "$dir"; exit 0; fi

mkdir -p "$dir/bin" "$dir/crds"
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
  case $b in
    etcd) pkg=./cmd/etcd ;;
    kwok) pkg=sigs.k8s.io/kwok/cmd/kwok ;;
    *) pkg=k8s.io/kubernetes/cmd/$b ;;
  esac
  echo "  go build $pkg" >&2
  go build -trimpath -ldflags "$ldflags" -o "$dir/bin/$b.tmp" "$pkg"
  mv "$dir/bin/$b.tmp" "$dir/bin/$b"
done

fetch_crds() {  # module@version subdir file...
  local mod=$1 sub=$2; shift 2
  local mdir
  mdir=$(go mod download -json "$mod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  for f in "$@"; do install -m 0644 "$mdir/$sub/$f" "$dir/crds/$f"; done
}
fetch_crds "github.com/kserve/kserve@$KSERVE_VERSION" config/crd/full \
  serving.kserve.io_inferenceservices.yaml serving.kserve.io_servingruntimes.yaml \
  serving.kserve.io_clusterservingruntimes.yaml
fetch_crds "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
  example/prometheus-operator-crd \
  monitoring.coreos.com_prometheusrules.yaml monitoring.coreos.com_servicemonitors.yaml \
  monitoring.coreos.com_podmonitors.yaml
printf 'kserve %s\nprometheus-operator %s\n' "$KSERVE_VERSION" "$PROMETHEUS_OPERATOR_VERSION" > "$dir/crds/.complete"

echo "built in $(( $(date +%s) - start ))s; cache size $(du -sh "$dir" | cut -f1)" >&2
echo "$dir"
