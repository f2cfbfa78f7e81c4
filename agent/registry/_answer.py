"""A registry's answer checked before any of it becomes a spec value.

A registry is a peer the agent does not control: what it answers is held to the rules a Git
repo is held to, because it ends up in the same places (`storageUri`, `MODEL_URI`, the
`*-registry` annotations, plan text and the audit log). The artifact URI must pass the
schema's one URI rule (agent.spec.artifact_uri_problem); a pinned version must come back as
itself; versions, aliases, stages and run ids must be short, plain names; a digest must be a
sha256 digest. A violation is a RegistryError that names the registry, the reference and the
offending value escaped (agent.errors.escaped), so nothing of it is applied.
"""

from __future__ import annotations

import re

from agent.errors import escaped
from agent.registry._base import RegistryError, ResolvedVersion
from agent.spec import artifact_uri_problem

__all__ = ["check_answer", "check_run_id", "check_version"]

# A version, as it may reach an annotation (`mlflow fraud-scorer@champion=13`) and plan text:
# no separator of that annotation ("=", "@", "/", "#"), no space, no control character.
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
# The alias or stage the reference named (from Git, already schema-checked; checked again here
# because it is written next to the version).
SELECTOR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}")
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


def check_run_id(value: object, where: str) -> str:
    """`value` if it is a run id (letters, digits, ".", "_", "-", at most 64), else a RegistryError."""
    if not isinstance(value, str) or not RUN_ID.fullmatch(value):
        raise RegistryError(f"{where}: the registry answered the run id {_shown(value)}: "
                            "it is not a run id (letters, digits, '.', '_' and '-', at most 64)")
    return value


def check_version(value: str, where: str, *, pinned: str | None = None, version: re.Pattern[str] = VERSION,
                  version_rule: str = "") -> str:
    """`value` if it is the pinned version (when one was pinned) and a plain version name; else
    a RegistryError. `version`/`version_rule`: a registry's own stricter pattern, its wording."""
    if pinned is not None and value != pinned:
        raise RegistryError(f"{where}: the registry answered version {_shown(value)} for the pinned version "
                            f"{_shown(pinned)}")
    if not (VERSION.fullmatch(value) and version.fullmatch(value)):
        rule = version_rule or "letters, digits, '.', '_', '+' and '-', starting with a letter or digit, at most 64"
        raise RegistryError(f"{where}: the registry answered the version {_shown(value)}: it is not a version ({rule})")
    return value


def check_answer(resolved: ResolvedVersion, where: str, *, pinned: str | None = None,
                 version: re.Pattern[str] = VERSION, version_rule: str = "") -> ResolvedVersion:
    """`resolved` if every part of it may be served and shown; else a RegistryError starting
    with `where` (the registry and the reference). `pinned`: the version the reference pinned,
    which the answer must be; `version`/`version_rule`: as for check_version."""
    check_version(resolved.version, where, pinned=pinned, version=version, version_rule=version_rule)
    if resolved.alias is not None and not SELECTOR.fullmatch(resolved.alias):
        raise RegistryError(f"{where}: the alias or stage {_shown(resolved.alias)} is not a plain name")
    if resolved.run_id is not None:
        check_run_id(resolved.run_id, where)
    if resolved.digest is not None and not DIGEST.fullmatch(resolved.digest):
        raise RegistryError(f"{where}: the registry answered the digest {_shown(resolved.digest)}: "
                            "it is not sha256:<64 hex digits>")
    problem = artifact_uri_problem(resolved.uri)
    if problem is not None:
        raise RegistryError(f"{where}: the registry answered the artifact URI {_shown(resolved.uri)} "
                            f"(version {resolved.version}): {problem}{_hint(resolved.uri)}")
    return resolved


def _shown(value: object) -> str:
    return escaped(value) if isinstance(value, str) else escaped(str(value))


def _hint(uri: str) -> str:
    """What to do about the URIs a registry legitimately gives but no serving runtime can pull."""
    if uri.startswith("mlflow-artifacts:"):
        return ("; it is MLflow's proxied artifact store, which serving runtimes cannot pull: give the "
                "experiment an artifact location on s3, gs or azure (mlflow server --default-artifact-root, "
                "or the experiment's artifact_location)")
    if uri.startswith(("runs:", "models:")):
        return "; the registry did not say where the model is stored"
    if "://" not in uri and "@" in uri:
        return "; GTO: name the artifact's uri in artifacts.yaml (or dvc.yaml's artifacts:) at the version's commit"
    return ""
