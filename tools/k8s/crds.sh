#!/usr/bin/env bash
# Fetch (or reuse) the KServe and Prometheus-Operator CRD YAML files pinned in crds.env, read
# from their Go modules (`go mod download`: exactly the files of the pinned releases). Prints
# the directory holding them (*.yaml) as the last line of stdout; progress goes to stderr.
#
#   AGENT_K8S_CACHE   root of the cache (default: ~/.cache/modelops-agent/k8s), as build.sh
#
# Seconds cold (two module downloads, no compiler), instant when cached: what the unit tests'
# CRD schema checks need, without the control-plane build. build.sh copies these files into
# its own cache directory (<dir>/crds) for the local cluster. Same cache discipline as
# build.sh: one directory per key, runs serialized by flock on <dir>/.lock, every file
# renamed into place, .complete written last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

# The version of the fetch below (which files, from where): part of the cache key with
# crds.env. Bump it when a change alters what ends up in the directory (and bump build.sh's
# recipe too: its cache directory holds a copy of these files).
recipe=1

# shellcheck source=crds.env
source "$here/crds.env"
# module@version, subdirectory in the module, files
kserve=("github.com/kserve/kserve@$KSERVE_VERSION" config/crd/full
        serving.kserve.io_inferenceservices.yaml serving.kserve.io_servingruntimes.yaml
        serving.kserve.io_clusterservingruntimes.yaml)
prometheus=("github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION"
            example/prometheus-operator-crd
            monitoring.coreos.com_prometheusrules.yaml monitoring.coreos.com_servicemonitors.yaml
            monitoring.coreos.com_podmonitors.yaml)

key=$({ cat crds.env; echo "crds recipe $recipe"; } | sha256sum | cut -c1-12)
root=${AGENT_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelops-agent/k8s}
dir="$root/crds-$key"

# Fast path, without the lock: files land by a rename and .complete is written last.
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi

mkdir -p "$dir"
if command -v flock >/dev/null; then
  exec 9>"$dir/.lock"
  if ! flock -n 9; then
    echo "another crds.sh is fetching into $dir: waiting for its lock ($dir/.lock)" >&2
    flock 9
  fi
  if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi
  rm -rf "$dir"/.tmp.*  # holding the lock: a temporary directory is a killed run's
else
  echo "warning: flock not found; concurrent fetches into $dir are not serialized" >&2
fi
tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
export GOFLAGS=-mod=mod
fetch() {  # module@version subdir file...
  local mod=$1 sub=$2; shift 2
  local mdir
  echo "  go mod download $mod" >&2
  mdir=$(go mod download -json "$mod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  for f in "$@"; do
    install -m 0644 "$mdir/$sub/$f" "$tmp/$f"
    mv -f "$tmp/$f" "$dir/$f"
  done
}
echo "fetching CRDs into $dir" >&2
fetch "${kserve[@]}"
fetch "${prometheus[@]}"
printf 'kserve %s\nprometheus-operator %s\n' "$KSERVE_VERSION" "$PROMETHEUS_OPERATOR_VERSION" > "$tmp/.complete"
mv -f "$tmp/.complete" "$dir/.complete"
echo "fetched in $(( $(date +%s) - start ))s" >&2
echo "$dir"
