#!/usr/bin/env bash
# Build (or reuse) Gitea, the real Git forge of the agent's tests and demo, from the Go
# module proxy like the control plane: code.gitea.io/gitea at the version pinned below, built as
# the main module from a writable copy of its module directory, with the cgo SQLite driver
# (CGO_ENABLED=1, tags sqlite sqlite_unlock_notify; v1.26 has no pure-Go one). Without the bindata
# tag Gitea reads options/, templates/ and public/ at run time: they are copied next to the binary
# (point [server] STATIC_ROOT_PATH at DIR/share). Prints the cache directory as the last line.
#
#   AGENT_GITEA_CACHE   root of the cache (default: ~/.cache/modelops-agent/gitea)
#
# A cached run only checks that the files are there; a cold build takes 4-6 minutes on 2 cores.
# Concurrent runs into one cache take turns (flock); temporaries are private and renamed into place.
set -euo pipefail
version=v1.26.0
recipe=1 # bump when the build commands below change (the cache key covers version + recipe)
key=$(printf 'gitea %s recipe %s\n' "$version" "$recipe" | sha256sum | cut -c1-12)
root=${AGENT_GITEA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelops-agent/gitea}
dir="$root/$version-$key"

complete() { [ -x "$dir/bin/gitea" ] && [ -f "$dir/share/.complete" ]; }
if complete; then echo "$dir"; exit 0; fi

mkdir -p "$dir"
exec 9>"$dir/.lock"
if command -v flock >/dev/null; then
  if ! flock -n 9; then
    echo "waiting for another build of Gitea into $dir" >&2
    flock 9
  fi
fi
if complete; then echo "reusing $dir, completed by the other build" >&2; echo "$dir"; exit 0; fi

work=$(mktemp -d "$dir/.build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
start=$(date +%s)
echo "building Gitea $version into $dir (cold build: minutes)" >&2
mod=$(cd "$work" && go mod download -json "code.gitea.io/gitea@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
cp -r "$mod" "$work/src"
chmod -R u+w "$work/src"
(
  cd "$work/src"
  CGO_ENABLED=1 GOFLAGS=-mod=mod go build -trimpath -tags 'sqlite sqlite_unlock_notify' \
    -ldflags "-s -w -X main.Version=${version#v} -X main.Tags=sqlite" -o "$work/gitea" .
)
mkdir -p "$work/share"
cp -r "$work/src/options" "$work/src/templates" "$work/share/"
[ -d "$work/src/public" ] && cp -r "$work/src/public" "$work/share/"
mkdir -p "$dir/bin"
rm -rf "$dir/share"
mv "$work/share" "$dir/share"
mv "$work/gitea" "$dir/bin/gitea"
printf 'gitea %s\n' "$version" > "$dir/share/.complete"
echo "built in $(( $(date +%s) - start ))s; cache size $(du -sh "$dir" | cut -f1)" >&2
echo "$dir"
