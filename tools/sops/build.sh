#!/usr/bin/env bash
# Build (or reuse) `sops`, `age` and `age-keygen`, the real tools that encrypt a model repo's
# Secrets, from the Go module proxy like the control plane: the tests encrypt files with them and
# the agent's own SOPS decryption (agent/source/_sops.py) is checked against what they write.
# Prints the cache directory (bin/sops, bin/age, bin/age-keygen) as the last line.
#
#   AGENT_SOPS_CACHE   root of the cache (default: ~/.cache/modelops-agent/sops)
#
# A cached run only checks that the files are there; a cold build takes 1-3 minutes on 2 cores
# (seconds with a warm Go build cache). Concurrent runs into one cache take turns (flock on
# <dir>/.lock); everything is built in a private temporary directory and renamed into place.
set -euo pipefail
sops_version=v3.13.3
age_version=v1.3.1
recipe=1 # bump when the build commands below change (the cache key covers versions + recipe)
key=$(printf 'sops %s age %s recipe %s\n' "$sops_version" "$age_version" "$recipe" | sha256sum | cut -c1-12)
root=${AGENT_SOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelops-agent/sops}
dir="$root/$sops_version-$key"
bins=(sops age age-keygen)

complete() {
  for b in "${bins[@]}"; do [ -x "$dir/bin/$b" ] || return 1; done
  [ -f "$dir/bin/.complete" ]
}
# Fast path, without the lock: every file lands by a rename and .complete is written last.
if complete; then echo "$dir"; exit 0; fi

mkdir -p "$dir/bin"
exec 9>"$dir/.lock"
if command -v flock >/dev/null; then
  if ! flock -n 9; then
    echo "another build.sh is building $dir: waiting for its lock ($dir/.lock)" >&2
    flock 9
  fi
  if complete; then echo "reusing $dir, completed by the other build" >&2; echo "$dir"; exit 0; fi
  rm -rf "$dir"/.tmp.*  # holding the lock: a temporary directory left here is a killed build's
else
  echo "warning: flock not found; concurrent builds into $dir are not serialized" >&2
fi

tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "building sops $sops_version and age $age_version into $dir (cold build: minutes)" >&2
export CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-mod=mod
# `go install pkg@version` builds each module with its own go.mod; one module per invocation.
(cd "$tmp" && go install -trimpath -ldflags "-s -w" "github.com/getsops/sops/v3/cmd/sops@$sops_version")
(cd "$tmp" && go install -trimpath -ldflags "-s -w -X main.Version=$age_version" \
  "filippo.io/age/cmd/age@$age_version" "filippo.io/age/cmd/age-keygen@$age_version")
for b in "${bins[@]}"; do mv -f "$tmp/$b" "$dir/bin/$b"; done
printf 'sops %s\nage %s\n' "$sops_version" "$age_version" > "$tmp/.complete"
mv -f "$tmp/.complete" "$dir/bin/.complete"
echo "built in $(( $(date +%s) - start ))s; cache size $(du -sh "$dir" | cut -f1)" >&2
echo "$dir"
