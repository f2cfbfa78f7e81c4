"""The wheel (and so the image, which installs only it) holds the agent and nothing of the local
environment: no devenv/ package, no local cluster, forge, Prometheus or MLflow starter, no demo.

The wheel is built for real (`pip wheel`, pyproject's backend, no build isolation: offline) from
a copy of what a checkout holds, devenv/ included, so a packaging rule that picked it up fails
here."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL_ENVIRONMENT = {"devenv", "devcluster", "demo"}  # no package or module of these names, anywhere in it


def test_the_wheel_holds_the_agent_and_no_local_environment(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("agent", "schemas", "devenv", "tests"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = {n for n in names if n.endswith(".py")}
    assert modules == {p.relative_to(source).as_posix() for p in (source / "agent").rglob("*.py")}
    parts = {part.removesuffix(".py") for n in modules for part in n.split("/")}
    assert not parts & LOCAL_ENVIRONMENT, sorted(parts & LOCAL_ENVIRONMENT)
    ui_files = {p.relative_to(source).as_posix() for d in ("templates", "static")
                for p in (source / "agent" / "ui" / d).iterdir()}
    assert ui_files and ui_files <= set(names), sorted(ui_files - set(names))  # the web UI's templates, CSS, JS
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["agent"]
