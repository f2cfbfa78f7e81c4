"""tools/k8s/crds.sh: the pinned CRDs in a cache of their own, without the control-plane build
(the unit tier's CRD schema checks use it; build.sh copies its files). A fake `go` stands in
for `go mod download` (as in test_build_lock): no network, no compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_build_lock import CRDS, FAKE_GO

K8S = Path(__file__).resolve().parents[2] / "tools" / "k8s"

pytestmark = pytest.mark.skipif(shutil.which("flock") is None or shutil.which("bash") is None,
                                 reason="needs bash and flock (util-linux)")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    fake = tmp_path / "fakego"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "go").write_text(FAKE_GO)
    (fake / "bin" / "go").chmod(0o755)
    for sub, files in CRDS.items():
        (fake / "module" / sub).mkdir(parents=True)
        for f in files:
            (fake / "module" / sub / f).write_text(f"# {f}\n")
    out = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "CGO"))}
    out.update(PATH=f"{fake / 'bin'}{os.pathsep}{out.get('PATH', '')}", FAKE_GO_DIR=str(fake),
               AGENT_K8S_CACHE=str(tmp_path / "cache"))
    return out


def _run(script: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_crds_are_fetched_once_into_their_own_cache_and_no_binary_is_built(env: dict[str, str]) -> None:
    rc, out, err = _run(K8S / "crds.sh", env)
    assert rc == 0, err
    directory = Path(out.strip().splitlines()[-1])
    assert directory.parent == Path(env["AGENT_K8S_CACHE"])
    for files in CRDS.values():
        for f in files:
            assert (directory / f).read_text() == f"# {f}\n"
    assert "kserve v" in (directory / ".complete").read_text()
    calls = Path(env["FAKE_GO_DIR"], "calls").read_text().splitlines()
    assert [c.split()[:3] for c in calls] == [["go", "mod", "download"]] * 2, calls  # no `go build`
    assert [p for p in directory.rglob("*") if ".tmp" in p.name] == []

    # Cached: the same directory at once, without the toolchain.
    Path(env["FAKE_GO_DIR"], "calls").write_text("")
    assert _run(K8S / "crds.sh", env) == (0, f"{directory}\n", "")
    assert Path(env["FAKE_GO_DIR"], "calls").read_text() == ""


def test_the_cache_key_is_the_pins(env: dict[str, str], tmp_path: Path) -> None:
    rc, out, err = _run(K8S / "crds.sh", env)
    assert rc == 0, err
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    (copy / "crds.env").write_text((copy / "crds.env").read_text() + "# edited\n")
    rc, out2, err = _run(copy / "crds.sh", env)
    assert rc == 0, err
    assert out2.strip() != out.strip()
