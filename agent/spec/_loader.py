"""Files of a repo at one revision -> a validated Spec, or every problem found at once."""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import threading
from collections.abc import Iterable, Iterator, Mapping

from agent.errors import SpecError, ValidationFailed
from agent.spec._common import Parsed, classify, is_ours, unique
from agent.spec._config import read_config
from agent.spec._environment import read_environments
from agent.spec._manifest import manifest_key, read_manifest
from agent.spec._model import read_model, read_runtime
from agent.spec._monitor import declared_models, job_template_paths, read_monitor
from agent.spec._rollout import check_rollout_rules
from agent.spec._types import Model, Spec
from agent.spec._unreadable import Unreadable
from agent.spec._yaml import Document, parse

YAML_SUFFIXES = (".yaml", ".yml")


def is_manifest_path(path: str) -> bool:
    return path.endswith(YAML_SUFFIXES)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Parsing allocates hundreds of thousands of long-lived objects (node trees kept for line
    lookup); a pause avoids repeated full collections that would find no garbage."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Loader:
    """Loads repos, keeping what the previous load parsed: two revisions of a repo (a diff), or
    two polls of the controller, share almost every file, and a file's bytes decide its parse.
    The state is this object's, not the process's: the CLI uses the default loader, a
    controller or a test can own one. `pause_gc` pauses the cyclic collector while loading
    (hundreds of thousands of long-lived objects, no garbage)."""

    def __init__(self, *, pause_gc: bool = True) -> None:
        self.pause_gc = pause_gc
        self._lock = threading.Lock()
        self._last: dict[tuple[str, bytes], Parsed] = {}

    def forget(self) -> None:
        """Drop what the previous load parsed (the next load starts cold)."""
        with self._lock:
            self._last = {}

    def load(self, files: Mapping[str, bytes], problems: Iterable[SpecError] = ()) -> Spec:
        """Parse, validate and resolve a repo. Raises ValidationFailed listing every problem."""
        if not self.pause_gc:
            return _load(self._parse_all(files), problems, files)
        with _gc_paused():
            return _load(self._parse_all(files), problems, files)

    def _parse_all(self, files: Mapping[str, bytes]) -> list[tuple[str, list[Document], list[SpecError]]]:
        """Parse each manifest file, reusing the previous load's parse of identical bytes.
        Parsed documents are never mutated, so sharing them is safe."""
        with self._lock:
            previous = self._last
        current: dict[tuple[str, bytes], Parsed] = {}
        out = []
        for path in sorted(files):
            if not is_manifest_path(path):
                continue
            key = (path, files[path])
            hit = previous.get(key)
            docs, errs = hit if hit is not None else parse(path, files[path])
            current[key] = (docs, errs)
            out.append((path, docs, errs))
        with self._lock:
            self._last = current
        return out


DEFAULT_LOADER = Loader()


def load(files: Mapping[str, bytes], problems: Iterable[SpecError] = ()) -> Spec:
    """Parse, validate and resolve a repo with the default loader. Raises ValidationFailed."""
    return DEFAULT_LOADER.load(files, problems)


def _load(parsed: list[tuple[str, list[Document], list[SpecError]]], problems: Iterable[SpecError],
          files: Mapping[str, bytes]) -> Spec:
    errors: list[SpecError] = list(problems)
    unreadable = Unreadable()  # what documents that failed may declare: no "not found" against them

    config_docs = [d for _, docs, _ in parsed for d in docs if is_ours(d, "RepositoryConfig")]
    config = read_config(config_docs, errors)
    excluded = config.exclude
    by_path = {path: (docs, errs) for path, docs, errs in parsed}
    templates = job_template_paths(parsed, excluded)  # read by their Monitor, never applied
    by_kind: dict[str, list[Document]] = {}
    raw: list[Document] = []
    for path, docs, errs in parsed:
        if any(fnmatch.fnmatch(path, pattern) for pattern in excluded) or path in templates:
            continue
        errors.extend(errs)
        if errs:
            unreadable.add_text(files[path].decode("utf-8", "replace"))
        for doc in docs:
            kind = classify(doc, errors)
            if kind is None:
                unreadable.add_data(doc.data)
            if kind == "RepositoryConfig" or kind is None:
                continue
            if kind == "":
                raw.append(doc)
            else:
                by_kind.setdefault(kind, []).append(doc)

    runtimes = []
    for d in by_kind.get("ServingRuntime", []):
        if r := read_runtime(d, errors):
            runtimes.append(r)
        else:
            unreadable.add_data(d.data)
    runtime_by_name = unique(runtimes, lambda r: r.name, "ServingRuntime", errors)
    models: list[Model] = []
    model_docs: dict[str, Document] = {}
    for d in by_kind.get("Model", []):
        if m := read_model(d, config, runtime_by_name, errors, unreadable):
            models.append(m)
            model_docs.setdefault(m.key, d)
    model_by_key = unique(models, lambda m: m.key, "Model", errors)
    declared = declared_models(by_kind.get("Model", []), config)
    monitors = [
        mon for d in by_kind.get("Monitor", [])
        if (mon := read_monitor(d, config, model_by_key, declared, errors, by_path, unreadable))
    ]
    unique(monitors, lambda m: f"{m.namespace}/{m.name}", "Monitor", errors)
    monitor_docs = [d for path, docs, _ in parsed if not any(fnmatch.fnmatch(path, pattern) for pattern in excluded)
                    for d in docs if is_ours(d, "Monitor")]
    check_rollout_rules(model_by_key, model_docs, monitor_docs, config, errors, unreadable)
    environments = read_environments(by_kind.get("Environment", []), config, runtime_by_name, model_by_key,
                                     model_docs, declared, monitor_docs, errors, unreadable)
    manifests = [obj for d in raw if (obj := read_manifest(d, config, errors))]
    unique(manifests, manifest_key, "object", errors)

    if errors:  # the target's name still tells `agent status` whose live state to show
        raise ValidationFailed(errors, target=config.name if config.location is not None or not config_docs else "")
    return Spec(
        config=config,
        models=tuple(sorted(models, key=lambda m: m.key)),
        monitors=tuple(sorted(monitors, key=lambda m: (m.namespace, m.name))),
        runtimes=tuple(sorted(runtimes, key=lambda r: r.name)),
        manifests=tuple(sorted(manifests, key=manifest_key)),
        environments=environments,
    )
