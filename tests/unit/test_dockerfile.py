"""The Dockerfile, read (no Docker engine needed): a reproducible, non-root, labelled image.

- every base image is pinned by digest (after the build ARGs' defaults are substituted);
- Python packages are installed under constraints.txt, which pins every dependency of
  pyproject.toml to one version that satisfies pyproject's range;
- the image runs as a non-root user, marks repositories safe for git (a mounted repo owned by
  another uid fails with "dubious ownership"), and carries the OCI labels;
- .dockerignore keeps everything out of the build context but what the Dockerfile copies.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
OCI_LABELS = ("title", "description", "source", "licenses", "version")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    assert not pending, "Dockerfile ends in a line continuation"
    return out


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def arg_defaults() -> dict[str, str]:
    defaults: dict[str, str] = {}
    for word, args in instructions():
        if word == "ARG" and "=" in args:
            name, _, value = args.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for word, args in instructions():
        if word == "FROM":
            out.append([])
        if out:
            out[-1].append((word, args))
    return out


def labels(stage: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for word, args in stage:
        if word == "LABEL":
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                found[key] = value
    return found


def constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name.strip()), (
            f"constraints.txt: not an exact pin: {raw!r}")
        key = canonicalize_name(name.strip())
        assert key not in pins, f"constraints.txt pins {name} twice"
        pins[key] = version.strip()
    return pins


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_base_image_is_pinned_by_digest() -> None:
    defaults = arg_defaults()
    names: set[str] = set()
    froms = [args for word, args in instructions() if word == "FROM"]
    assert froms
    for args in froms:
        parts = args.split()
        image = substitute(parts[0], defaults)
        if image not in names:  # FROM <an earlier stage> needs no digest
            assert DIGEST.search(image), f"FROM {parts[0]} (= {image}) is not pinned by digest"
        if len(parts) == 3 and parts[1].upper() == "AS":
            names.add(parts[2])


def test_runs_as_non_root() -> None:
    final = stages()[-1]
    users = [args for word, args in final if word == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0", ""), users[-1]
    assert group not in ("root", "0"), users[-1]


def test_pip_installs_under_the_constraints() -> None:
    runs = [args for stage in stages() for word, args in stage if word == "RUN" and "pip " in args]
    assert runs
    for run in runs:
        for command in re.split(r"&&|;", run):
            if re.search(r"\bpip (install|wheel)\b", command):
                assert re.search(r"(--constraint[ =]|-c )\S*constraints\.txt", command), (
                    f"pip without --constraint constraints.txt: {command.strip()}")
    copies = [args for word, args in instructions() if word == "COPY"]
    assert any("constraints.txt" in args.split() for args in copies), "constraints.txt is not copied into the build"


def test_git_trusts_mounted_repositories() -> None:
    final = stages()[-1]
    assert any(word == "RUN" and "git config --system --add safe.directory '*'" in args for word, args in final)


def test_the_runtime_has_git_and_the_signature_verifiers() -> None:
    """git, and what `git verify-commit` runs for --verify-signatures: ssh-keygen (openssh-client)
    for SSH signatures, gpg for OpenPGP ones."""
    installed: set[str] = set()
    for word, args in stages()[-1]:
        if word == "RUN":
            for command in re.split(r"&&|;", args):
                words = command.split()
                if words[:2] == ["apt-get", "install"]:
                    installed |= {w for w in words[2:] if not w.startswith("-")}
    assert {"git", "openssh-client", "ca-certificates", "gpg"} <= installed, installed


def test_oci_labels() -> None:
    found = {k: substitute(v, arg_defaults()) for k, v in labels(stages()[-1]).items()}
    for name in OCI_LABELS:
        assert found.get(f"org.opencontainers.image.{name}"), f"label org.opencontainers.image.{name} missing"
    project = pyproject()["project"]
    assert found["org.opencontainers.image.version"] == project["version"]
    assert found["org.opencontainers.image.licenses"] == project["license"]
    assert found["org.opencontainers.image.title"] == project["name"]


def test_constraints_pin_every_runtime_dependency() -> None:
    pins = constraints()
    for spec in pyproject()["project"]["dependencies"]:
        req = Requirement(spec)
        key = canonicalize_name(req.name)
        assert key in pins, f"{req.name} (pyproject.toml) is not pinned in constraints.txt"
        assert req.specifier.contains(pins[key], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[key]}, outside pyproject's {req.specifier}")
    assert canonicalize_name(pyproject()["project"]["name"]) not in pins


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a directory's match covers its files."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/")) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_only_what_is_copied() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    for word, args in instructions():
        if word == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert not _ignored(source.rstrip("/"), patterns), f"COPY {source}: excluded by .dockerignore"
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
    for path in (".venv/bin/python", ".git/HEAD", "tests/unit/test_dockerfile.py", "bench/out/x.json",
                 ".devcluster/kubeconfig", "agent/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v",
                 "devenv/cluster/__init__.py", "devenv/demo.py"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"


def test_the_image_gets_the_agent_s_package_and_no_other_python() -> None:
    """The local environment (devenv/: local cluster, forge, Prometheus, MLflow, the demo) stays in
    the checkout: the only Python the build stage copies is agent/ (the wheel is built from it;
    tests/unit/test_wheel_contents.py checks that wheel)."""
    copied = [source.rstrip("/") for word, args in instructions() if word == "COPY" and "--from" not in args
              for source in args.split()[:-1]]
    packages = {source for source in copied if (ROOT / source).is_dir() and any((ROOT / source).rglob("*.py"))}
    assert packages == {"agent"}, packages
