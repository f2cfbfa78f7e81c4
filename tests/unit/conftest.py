"""Helpers for the unit tests: in-memory model repos ({path: bytes}) and error assertions."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from agent.errors import SpecError, ValidationFailed
from agent.spec import Spec, load

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_REPO = REPO_ROOT / "examples" / "model-repo"


def t(text: str) -> str:
    """Dedented text; a leading newline is dropped so line 1 is the first line written."""
    return textwrap.dedent(text).removeprefix("\n")


def y(text: str) -> bytes:
    """Dedented YAML as bytes (see `t`)."""
    return t(text).encode()


def files(entries: Mapping[str, str | bytes]) -> dict[str, bytes]:
    """A repo snapshot: str values are dedented like `y`, bytes are taken as they are."""
    return {path: y(v) if isinstance(v, str) else v for path, v in entries.items()}


def errors_of(
    entries: Mapping[str, str | bytes], problems: Iterable[SpecError] = ()
) -> list[SpecError]:
    """Load a repo that must be invalid; its errors, in the order ValidationFailed keeps."""
    with pytest.raises(ValidationFailed) as info:
        load(files(entries), problems)
    return info.value.errors


def only_error(entries: Mapping[str, str | bytes]) -> SpecError:
    errors = errors_of(entries)
    assert len(errors) == 1, "\n".join(str(e) for e in errors)
    return errors[0]


def assert_error(error: SpecError, file: str, line: int, field: str, text: str) -> None:
    """The error is at file:line, names field (dotted path, "" for the document) and says text."""
    assert (error.file, error.line, error.field) == (file, line, field), str(error)
    assert text in error.message, str(error)


def loads(entries: Mapping[str, str | bytes]) -> Spec:
    return load(files(entries))


# A valid baseline repo that tests extend or override file by file.
CONFIG = t("""
    apiVersion: modelops.dev/v1alpha1
    kind: RepositoryConfig
    metadata:
      name: test-repo
    spec:
      policy:
        allowedNamespaces: [fraud, recsys, "team-*"]
    """)

RUNTIME = t("""
    apiVersion: modelops.dev/v1alpha1
    kind: ServingRuntime
    metadata:
      name: sklearn-server
    spec:
      image: docker.io/kserve/sklearnserver:v0.14.1
      formats: [sklearn]
    """)

MODEL = t("""
    apiVersion: modelops.dev/v1alpha1
    kind: Model
    metadata:
      name: scorer
      namespace: fraud
    spec:
      format: sklearn
      runtime: sklearn-server
      versions:
        - version: "1"
          uri: s3://models/scorer/1/
      stable: "1"
    """)

BASE: dict[str, str | bytes] = {
    "repo.yaml": CONFIG,
    "runtimes/sklearn.yaml": RUNTIME,
    "models/scorer.yaml": MODEL,
}


def repo(extra: Mapping[str, str | bytes] | None = None) -> dict[str, str | bytes]:
    """BASE plus (or overridden by) extra files."""
    return {**BASE, **(extra or {})}


def registry_model(reference: str) -> str:
    """MODEL with its one version, `served`, taken from a registry: `reference` is that version's
    `registry:` entry (e.g. `mlflow: {name: fraud-scorer, alias: champion}`)."""
    return t(f"""
        apiVersion: modelops.dev/v1alpha1
        kind: Model
        metadata:
          name: scorer
          namespace: fraud
        spec:
          format: sklearn
          runtime: sklearn-server
          versions:
            - version: served
              registry:
                {reference}
          stable: served
        """)


def disk_repo(root: Path, model: str = MODEL, config_extra: str = "") -> Path:
    """BASE written under `root` (for the commands that read a directory): CONFIG with
    `config_extra` appended, RUNTIME, and `model` as models/scorer.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "repo.yaml").write_text(CONFIG + config_extra)
    (root / "runtimes").mkdir(exist_ok=True)
    (root / "runtimes" / "sklearn.yaml").write_text(RUNTIME)
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / "scorer.yaml").write_text(model)
    return root


def mlflow_repo(root: Path, url: str, reference: str = "mlflow: {name: fraud-scorer, alias: champion}",
                settings: str = "") -> Path:
    """disk_repo with the MLflow at `url` (`settings`: more of its fields, e.g. `, tokenEnv: X`)
    and the model's version taken from it by `reference`."""
    return disk_repo(root, registry_model(reference), f"  registries:\n    mlflow: {{trackingUri: '{url}'{settings}}}\n")
