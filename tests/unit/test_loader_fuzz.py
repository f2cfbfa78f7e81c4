"""Property-based fuzzing of the loader: whatever bytes or structures a repo holds, `load`
returns a Spec or raises ValidationFailed, never another exception; and a Spec it returns
renders to objects that serialize as strict JSON (no NaN, no infinity).

Bounded (a few hundred examples each) and hermetic: no example database, no deadline.
"""

from __future__ import annotations

import copy
import json
import math
import os
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import ValidationFailed
from agent.render import render
from agent.spec import Spec, load
from tests.unit.conftest import BASE, CONFIG, MODEL, RUNTIME, files

# AGENT_FUZZ_EXAMPLES=5000 explores with a random seed; by default a fixed, small run
_EXAMPLES = os.environ.get("AGENT_FUZZ_EXAMPLES")
FUZZ = settings(max_examples=int(_EXAMPLES or 200), deadline=None, database=None, derandomize=not _EXAMPLES,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

MONITOR = """apiVersion: modelops.dev/v1alpha1
kind: Monitor
metadata: {name: scorer, namespace: fraud}
spec:
  model: scorer
  rules:
    - {name: p99, type: latency, quantile: 0.99, threshold: 0.25}
    - {name: errors, type: errorRate, threshold: 0.02, action: rollback}
    - {name: drift, type: drift, feature: amount, method: psi, threshold: 0.2, window: 1h}
"""
RAW = """apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: fraud
  labels: {app: scorer}
data: {A: "1"}
"""
DOCS = {"repo.yaml": CONFIG, "runtimes/sklearn.yaml": RUNTIME, "models/scorer.yaml": MODEL,
        "monitors/scorer.yaml": MONITOR, "infra/cm.yaml": RAW}
TREES = {path: yaml.safe_load(text) for path, text in DOCS.items()}

# Leaves a hostile repo might hold: every YAML scalar type at its edges.
# Numbers at the edges of what YAML, JSON and Kubernetes can hold
EDGE_NUMBERS = st.sampled_from([math.nan, math.inf, -math.inf, 2 ** 63, -(2 ** 63) - 1, 10 ** 400, 1e308, -0.0,
                                0, -1, 101, 1001])
LEAVES = st.one_of(
    EDGE_NUMBERS,
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "1", "0.5", "-1", "s3://b/m/2/", "sklearn", "fraud", "kube-system", "Scorer",
                     "scorer\n", "sha256:" + "a" * 64, "5m", "cluster-admin", "1e400", "\ufeff", "a" * 300]),
)
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.text(max_size=8), inner, max_size=4),
), max_leaves=12)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def mutated_repos(draw: st.DrawFn) -> dict[str, bytes]:
    """The valid baseline with a few fields replaced, deleted or added, dumped as YAML."""
    trees = copy.deepcopy(TREES)
    # mostly one change, so that what it breaks is not hidden behind another error
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 4]))):
        path = draw(st.sampled_from(sorted(trees)))
        tree = trees[path]
        where = draw(st.sampled_from(_paths(tree)))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        value = draw(st.one_of(EDGE_NUMBERS, LEAVES, VALUES))
        if not where:
            trees[path] = value
            continue
        parent = tree
        for key in where[:-1]:
            parent = parent[key]
        last = where[-1]
        if action == "delete" and isinstance(parent, dict):
            del parent[last]
        elif action == "add" and isinstance(parent[last], dict):
            parent[last][draw(st.text(max_size=8))] = value
        else:
            parent[last] = value
    out = {}
    for path, tree in trees.items():
        text = yaml.safe_dump(tree, allow_unicode=draw(st.booleans()), sort_keys=False)
        out[path] = text.encode()
    if draw(st.integers(min_value=0, max_value=9)) == 0:  # a duplicate of some file under another name
        source = draw(st.sampled_from(sorted(out)))
        out["copy/" + source] = out[source]
    return out


# Text built from what makes YAML interesting: indicators, tags, anchors, quotes, breaks.
YAML_ALPHABET = st.sampled_from([*"abcxyz019 -:{}[],&*!|>'\"%@`#?\n\t.",
                                 "\r\n", "---\n", "...\n", "!!binary ", "!!python/object:os.system ", "!!int ",
                                 "!!float ", "!!set ", "&a ", "*a", "<<: ", ".nan", ".inf", "-.inf", "1e400",
                                 "apiVersion: modelops.dev/v1alpha1\n", "apiVersion: v1\n", "kind: Model\n",
                                 "kind: ConfigMap\n", "metadata:\n  name: x\n", "spec:\n  ", "\ufeff", "\x00", "é"])
TEXTS = st.lists(YAML_ALPHABET, max_size=60).map("".join)


def _load(repo: dict[str, bytes]) -> Spec | None:
    try:
        spec = load(repo)
    except ValidationFailed as failed:
        assert failed.errors, "ValidationFailed without an error"
        for error in failed.errors:
            assert error.file and error.line >= 1 and error.message, error
        return None
    objects = render(spec)  # a valid repo renders to strict JSON: Kubernetes takes no NaN
    json.dumps(objects, allow_nan=False)
    return spec


@FUZZ
@given(mutated_repos())
def test_mutated_repos_load_or_fail_cleanly(repo: dict[str, bytes]) -> None:
    spec = _load(repo)
    if spec is not None:
        for model in spec.models:
            for version in model.versions.values():
                assert all(math.isfinite(v) for v in version.evaluation.values())
        for monitor in spec.monitors:
            assert all(math.isfinite(r.threshold) and math.isfinite(r.quantile) for r in monitor.rules)


@FUZZ
@given(TEXTS, st.sampled_from(sorted(DOCS)))
def test_arbitrary_yaml_text_loads_or_fails_cleanly(text: str, path: str) -> None:
    _load({**files(BASE), path: text.encode()})


@FUZZ
@given(st.binary(max_size=200), st.integers(min_value=0), st.sampled_from(sorted(DOCS)))
def test_corrupted_bytes_load_or_fail_cleanly(noise: bytes, offset: int, path: str) -> None:
    original = DOCS[path].encode()
    at = offset % (len(original) + 1)
    _load({**files(BASE), path: original[:at] + noise + original[at + len(noise) // 2:]})


def test_the_unmutated_baseline_is_valid() -> None:
    """The fuzzers start from a valid repo, so what they find is what they changed."""
    spec = _load({path: text.encode() for path, text in DOCS.items()})
    assert spec is not None and len(spec.monitors) == 1 and len(spec.manifests) == 1
