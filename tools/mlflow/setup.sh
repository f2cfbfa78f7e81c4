#!/usr/bin/env bash
# Install (or reuse) MLflow, the real model registry of the agent's tests, into its own
# virtualenv: the agent never imports mlflow (it speaks MLflow's REST API with the standard
# library), so the server's many dependencies stay out of the agent's install. The version is
# pinned below; the venv is created with `python3 -m venv` and `pip install mlflow==VERSION`.
# Prints the venv directory as the last line (the server is DIR/bin/mlflow).
#
#   AGENT_MLFLOW_CACHE   root of the cache (default: ~/.cache/modelops-agent/mlflow)
#   PYTHON               the interpreter to build the venv from (default: python3)
#
# A cached run only checks that the files are there; a cold install downloads ~200 MB of wheels.
# Concurrent runs into one cache take turns (flock); the venv is built in a private temporary
# directory under the cache and renamed into place only once complete.
set -euo pipefail
version=3.17.2 # 3.18.0 needs mlflow-skinny 3.18.0, which PyPI does not offer to Python 3.11 here
recipe=1 # bump when the install commands below change (the cache key covers version + recipe + python)
python=${PYTHON:-python3}
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
key=$(printf 'mlflow %s recipe %s python %s\n' "$version" "$recipe" "$pyver" | sha256sum | cut -c1-12)
root=${AGENT_MLFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelops-agent/mlflow}
dir="$root/$version-$key"

complete() { [ -x "$dir/bin/mlflow" ] && [ -f "$dir/.complete" ]; }
if complete; then echo "$dir"; exit 0; fi

mkdir -p "$root"
exec 9>"$root/.lock-$version-$key"
if command -v flock >/dev/null; then
  if ! flock -n 9; then
    echo "waiting for another install of MLflow into $dir" >&2
    flock 9
  fi
fi
if complete; then echo "reusing $dir, completed by the other install" >&2; echo "$dir"; exit 0; fi

# A venv's scripts name its own path in their shebangs: it is built at its final path, after
# whatever an interrupted install left there is cleared; .complete is written last.
rm -rf "$dir"
start=$(date +%s)
echo "installing MLflow $version into $dir (cold: a minute or more)" >&2
trap 'rm -rf "$dir"' ERR
"$python" -m venv "$dir"
"$dir/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
"$dir/bin/pip" install -q --disable-pip-version-check "mlflow==$version" >&2
"$dir/bin/mlflow" --version >&2
trap - ERR
printf 'mlflow %s\n' "$version" > "$dir/.complete"
echo "installed in $(( $(date +%s) - start ))s; venv size $(du -sh "$dir" | cut -f1)" >&2
echo "$dir"
