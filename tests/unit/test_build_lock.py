"""tools/k8s/build.sh: concurrent runs into one cache, and what the cache key covers.

A fake `go` first on PATH stands in for the toolchain: `go build -o X` writes X and then takes
a moment to "finish" (so two builds of the same binary overlap), `go mod download -json M`
points at a directory holding the CRD files the script installs. No network, no compiler: the
whole test takes a few seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "tools" / "k8s"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok", "kserve-webhook")
CRDS = {
    "config/crd/full": ("serving.kserve.io_inferenceservices.yaml", "serving.kserve.io_servingruntimes.yaml",
                        "serving.kserve.io_clusterservingruntimes.yaml"),
    "example/prometheus-operator-crd": ("monitoring.coreos.com_prometheusrules.yaml",
                                        "monitoring.coreos.com_servicemonitors.yaml",
                                        "monitoring.coreos.com_podmonitors.yaml"),
}

FAKE_GO = r"""#!/usr/bin/env bash
# A stand-in for the go command: only what tools/k8s/build.sh calls.
set -eu
echo "go $*" >> "$FAKE_GO_DIR/calls"
case "$1" in
  build)
    out=""; prev=""
    for a in "$@"; do [ "$prev" = "-o" ] && out=$a; prev=$a; done
    [ -n "$out" ] || { echo "fake go: no -o" >&2; exit 2; }
    printf '#!/bin/sh\necho fake %s\n' "$out" > "$out"
    chmod 0755 "$out"
    touch "$FAKE_GO_DIR/started"
    sleep 0.4
    ;;
  mod)
    [ "$2" = download ] && [ "$3" = -json ] || { echo "fake go: unexpected $*" >&2; exit 2; }
    printf '{"Path": "%s", "Dir": "%s"}\n' "${4%@*}" "$FAKE_GO_DIR/module"
    ;;
  *) echo "fake go: unexpected $*" >&2; exit 2 ;;
esac
"""

pytestmark = pytest.mark.skipif(shutil.which("flock") is None or shutil.which("bash") is None,
                                 reason="needs bash and flock (util-linux)")


@pytest.fixture
def fake_env(tmp_path: Path) -> dict[str, str]:
    fake = tmp_path / "fakego"
    (fake / "bin").mkdir(parents=True)
    go = fake / "bin" / "go"
    go.write_text(FAKE_GO)
    go.chmod(0o755)
    for sub, files in CRDS.items():
        (fake / "module" / sub).mkdir(parents=True)
        for f in files:
            (fake / "module" / sub / f).write_text(f"# {f}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "CGO"))}
    env.update(PATH=f"{fake / 'bin'}{os.pathsep}{env.get('PATH', '')}", FAKE_GO_DIR=str(fake),
               AGENT_K8S_CACHE=str(tmp_path / "cache"))
    return env


def _start(script: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def run_concurrently(script: Path, env: dict[str, str]) -> list[tuple[int, str, str]]:
    """Start one build, and a second one as soon as the first is inside `go build`."""
    started = Path(env["FAKE_GO_DIR"]) / "started"
    first = _start(script, env)
    deadline = time.monotonic() + 60
    while not started.exists():
        if first.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    second = _start(script, env)
    return [_finish(first), _finish(second)]


def test_two_concurrent_builds_share_one_cache(fake_env: dict[str, str]) -> None:
    results = run_concurrently(K8S / "build.sh", fake_env)
    for rc, _out, err in results:
        assert rc == 0, err
    dirs = {out.strip().splitlines()[-1] for _rc, out, _err in results}
    assert len(dirs) == 1, dirs
    cache = Path(dirs.pop())
    assert cache.parent == Path(fake_env["AGENT_K8S_CACHE"])
    for b in BINARIES:
        assert os.access(cache / "bin" / b, os.X_OK), b
    for files in CRDS.values():
        for f in files:
            assert (cache / "crds" / f).read_text() == f"# {f}\n"
    assert (cache / "crds" / ".complete").is_file()
    leftovers = [p for p in Path(fake_env["AGENT_K8S_CACHE"]).rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    # One of them built, the other waited for it and reused its result.
    (_, _, err1), (_, _, err2) = results
    assert sum("building control plane" in e for e in (err1, err2)) == 1, (err1, err2)
    assert "waiting" in err2 and "reusing" in err2, err2
    calls = (Path(fake_env["FAKE_GO_DIR"]) / "calls").read_text().splitlines()
    assert len([c for c in calls if c.startswith("go build")]) == len(BINARIES), calls

    # A third run finds the cache complete without the toolchain or the lock.
    rc, out, err = _finish(_start(K8S / "build.sh", fake_env))
    assert (rc, out.strip(), err) == (0, str(cache), "")


def test_cache_key_is_the_pins_and_the_recipe_not_the_script(fake_env: dict[str, str], tmp_path: Path) -> None:
    rc, out, err = _finish(_start(K8S / "build.sh", fake_env))
    assert rc == 0, err
    cache = out.strip().splitlines()[-1]

    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    webhook = tmp_path / "kserve-webhook"  # build.sh builds ../kserve-webhook too
    shutil.copytree(K8S.parent / "kserve-webhook", webhook)
    script = copy / "build.sh"
    text = script.read_text()
    # Edit the script (a comment, a message): same cache directory, nothing rebuilt.
    script.write_text(text.replace("(cold build: minutes)", "(cold build: several minutes)") + "# edited\n")
    rc, out, err = _finish(_start(script, fake_env))
    assert (rc, out.strip(), err) == (0, cache, "")

    # Bump the recipe: a new directory.
    recipe = re.search(r"^recipe=(\S+)$", text, re.M)
    assert recipe, "build.sh defines no recipe=..."
    script.write_text(text.replace(recipe.group(0), f"recipe={recipe.group(1)}-bumped"))
    rc, out, err = _finish(_start(script, fake_env))
    assert rc == 0, err
    assert out.strip().splitlines()[-1] != cache

    # Change the webhook's source: a new directory.
    script.write_text(text)
    main_go = (webhook / "main.go").read_text()
    (webhook / "main.go").write_text(main_go + "// edited\n")
    rc, out, err = _finish(_start(script, fake_env))
    assert rc == 0, err
    assert out.strip().splitlines()[-1] != cache
    (webhook / "main.go").write_text(main_go)

    # Change a pin (crds.env): a new directory too.
    (copy / "crds.env").write_text((copy / "crds.env").read_text() + "# edited\n")
    rc, out, err = _finish(_start(script, fake_env))
    assert rc == 0, err
    assert out.strip().splitlines()[-1] != cache

    # The webhook's kserve differs from the CRDs' one: refused before anything is built.
    env_text = (copy / "crds.env").read_text()
    (copy / "crds.env").write_text(re.sub(r"^KSERVE_VERSION=.*$", "KSERVE_VERSION=v0.0.1", env_text, flags=re.M))
    rc, out, err = _finish(_start(script, fake_env))
    assert rc == 1 and out == ""
    assert "tools/kserve-webhook/go.mod pins kserve v" in err and "but crds.env says v0.0.1" in err, err


def test_an_interrupted_build_is_completed_and_its_leftovers_removed(fake_env: dict[str, str]) -> None:
    rc, out, err = _finish(_start(K8S / "build.sh", fake_env))
    assert rc == 0, err
    cache = Path(out.strip().splitlines()[-1])
    # What a build killed mid-way leaves: one binary missing, its temporary directory, no marker.
    (cache / "bin" / "kwok").unlink()
    (cache / "crds" / ".complete").unlink()
    stale = cache / ".tmp.AbC123"
    stale.mkdir()
    (stale / "kwok").write_text("half a binary")
    calls = Path(fake_env["FAKE_GO_DIR"]) / "calls"
    calls.write_text("")

    rc, out, err = _finish(_start(K8S / "build.sh", fake_env))
    assert rc == 0, err
    assert out.strip().splitlines()[-1] == str(cache)
    builds = [c for c in calls.read_text().splitlines() if c.startswith("go build")]
    assert len(builds) == 1 and builds[0].endswith(" sigs.k8s.io/kwok/cmd/kwok"), builds  # only what was missing
    assert os.access(cache / "bin" / "kwok", os.X_OK)
    assert (cache / "crds" / ".complete").is_file()
    assert not stale.exists()
    assert [p for p in cache.rglob("*") if ".tmp" in p.name] == []
