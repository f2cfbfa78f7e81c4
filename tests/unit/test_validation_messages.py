"""Validation messages in plain words, and only the first cause.

Schema errors: every jsonschema keyword our schemas use has a sentence of its own; values are
shown as YAML (`{metric: auc}`, `null`, `true`), never as Python (`{'metric': 'auc'}`, `None`,
`True`); every pattern is said in words; a number where a string belongs says how to quote it.
A mutation test puts wrong values of every kind into every field of the example repo's
documents and scans the messages for Python.

Cascades: a document that failed (a file that does not parse, a schema error) is not reported
again as a missing reference from the documents that name it."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import ValidationFailed
from agent.spec import load
from agent.spec._messages import PATTERN_WORDS, show, simple
from agent.spec._schema import SCHEMA_FILES, schemas_dir, validate
from agent.spec._yaml import parse

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "model-repo"
SCHEMAS = schemas_dir()

# what a message must never hold: a Python dict/list repr, None/True/False, a raw regex
PYTHON = re.compile(r"\{'|\['|\bNone\b|\bTrue\b|\bFalse\b|\^\[|\]\*\$|\\\.|\(\?!")


def _schema_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key in ("properties", "$defs", "patternProperties"):
                for sub in value.values():
                    yield from _schema_nodes(sub)
            else:
                yield from _schema_nodes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _schema_nodes(item)


def _all_schema_nodes() -> list[dict[str, Any]]:
    return [n for f in sorted(SCHEMAS.glob("*.json")) for n in _schema_nodes(json.loads(f.read_text()))]


ANNOTATIONS = {"description", "title", "$schema", "$id", "$defs", "$ref", "default", "examples"}
STRUCTURE = {"properties", "items", "if", "then", "else", "allOf", "additionalProperties", "unevaluatedProperties",
             "propertyNames", "oneOf", "anyOf", "not"}
SIMPLE = {"type", "enum", "const", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
          "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "minProperties", "required"}


def test_every_keyword_of_the_schemas_is_translated() -> None:
    used = {key for node in _all_schema_nodes() for key in node}
    assert used <= ANNOTATIONS | STRUCTURE | SIMPLE, used - ANNOTATIONS - STRUCTURE - SIMPLE
    samples = {"type": "string", "enum": ["a"], "const": "a", "pattern": "^/", "minimum": 0, "maximum": 1,
               "exclusiveMinimum": 0, "exclusiveMaximum": 1, "minLength": 1, "maxLength": 2, "minItems": 1,
               "maxItems": 1, "uniqueItems": True, "minProperties": 2, "required": ["x"]}
    for keyword in SIMPLE:
        instance: Any = {"metric": "auc"} if keyword in ("minProperties", "required") else (
            [1, 1] if keyword in ("uniqueItems", "maxItems", "minItems") else "abc")
        message = simple(keyword, samples[keyword], instance, {"properties": {"metric": {}, "min": {}}},
                         ["spec", "gates", 0], lambda: None)
        assert message and not PYTHON.search(message), (keyword, message)


def test_every_pattern_of_the_schemas_is_said_in_words() -> None:
    patterns = {node["pattern"] for node in _all_schema_nodes() if isinstance(node.get("pattern"), str)}
    assert patterns and patterns <= set(PATTERN_WORDS), patterns - set(PATTERN_WORDS)
    for words in PATTERN_WORDS.values():
        assert not PYTHON.search(words), words


@pytest.mark.parametrize(("value", "shown"), [
    ({"metric": "auc"}, "{metric: auc}"),
    ([None, True, False, 1.5, "a b", "yes"], "[null, true, false, 1.5, 'a b', 'yes']"),
    ("two", "'two'"),
    ("it's", '"it\'s"'),
    ("a\nb", '"a\\nb"'),
    ({"a b": [1, {"k": None}]}, "{'a b': [1, {k: null}]}"),
    (float("nan"), ".nan"),
    ("x" * 200, "'" + "x" * 76 + "..."),
])
def test_values_are_shown_as_yaml(value: Any, shown: str) -> None:
    assert show(value) == shown


MODEL = """\
apiVersion: modelops.dev/v1alpha1
kind: Model
metadata: {name: scorer, namespace: fraud}
spec:
  format: sklearn
  versions: [{version: "1", uri: "s3://b/1/"}, {version: "2", uri: "s3://b/2/"}]
  stable: "1"
  replicas: 1
"""


def _errors(text: str) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        load({"m.yaml": text.encode()})
    return [str(e) for e in caught.value.errors]


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("  replicas: 1\n", "  replicas: 1\n  gates: [{metric: auc}]\n", "m.yaml:9: spec.gates[0]: a gate needs min, max or both"),
    ('stable: "1"', "stable: 1", 'm.yaml:7: spec.stable: 1 is a number, expected a string (quote it: "1")'),
    ('stable: "1"', "stable: 1.10", 'm.yaml:7: spec.stable: 1.10 is a number, expected a string (quote it: "1.10")'),
    ('stable: "1"', "stable: yes", 'm.yaml:7: spec.stable: yes is a boolean in YAML, expected a string (quote it: "yes")'),
    ('stable: "1"', "stable:", "m.yaml:7: spec.stable: empty (null), expected a string"),
    ('stable: "1"', "stable: [1]", "m.yaml:7: spec.stable: [1] is a list, expected a string"),
    ("replicas: 1", "replicas: true", "m.yaml:8: spec.replicas: true is a boolean in YAML, expected an integer"),
    ("replicas: 1", "replicas: '1'", "m.yaml:8: spec.replicas: '1' is a string, expected an integer"),
    ("name: scorer", "name: Scorer", "m.yaml:3: metadata.name: 'Scorer' must be lowercase letters, digits and "
     "'-', starting with a letter and ending with a letter or digit"),
    ("  replicas: 1\n", "  replicas: 1\n  backend: null\n", "m.yaml:9: spec.backend: null is not one of 'kserve', "
     "'kubernetes'"),
    ("  replicas: 1\n", "  replicas: 1\n  env: {'1X': a}\n", "m.yaml:9: spec.env.1X: invalid key '1X': a key must "
     "be an environment variable name: letters, digits and '_', not starting with a digit"),
    ("spec:\n", "spec: [1, 2]\nx:\n", "m.yaml:4: spec: [1, 2] is a list, expected a mapping"),
])
def test_messages_in_words(old: str, new: str, expected: str) -> None:
    assert old in MODEL
    errors = _errors(MODEL.replace(old, new))
    assert expected in errors, errors
    assert not any(PYTHON.search(e) for e in errors), errors


def test_a_bad_rule_name_says_what_is_allowed() -> None:
    monitor = ("---\napiVersion: modelops.dev/v1alpha1\nkind: Monitor\nmetadata: {name: scorer, namespace: fraud}\n"
               "spec:\n  model: scorer\n  rules:\n    - {name: Error_Rate, type: errorRate, threshold: 0.1}\n")
    assert _errors(MODEL + monitor) == [
        "m.yaml:16: spec.rules[0].name: 'Error_Rate' must be lowercase letters, digits and '-', starting and ending "
        "with a letter or digit"]


def test_label_values_that_are_not_strings_say_why_in_yaml() -> None:
    cm = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: fraud\n"
          "  labels: {a: 1, b: yes, c: null, d: [x]}\n  annotations: {e: true}\n")
    errors = _errors(MODEL + "---\n" + cm)
    assert errors == [
        "m.yaml:15: metadata.labels.a: label values must be strings (1 is a number: quote it)",
        "m.yaml:15: metadata.labels.b: label values must be strings (true is a boolean in YAML: quote it)",
        'm.yaml:15: metadata.labels.c: label values must be strings (it is empty (null): write "" for an empty '
        'string)',
        "m.yaml:15: metadata.labels.d: label values must be strings ([x] is a list)",
        "m.yaml:16: metadata.annotations.e: annotation values must be strings (true is a boolean in YAML: quote it)",
    ]


# --- every field of the example's documents, with wrong values of every kind ------------------------

WRONG: list[Any] = [None, True, 1.5, -1, "", "Not Valid!", [], [None, {"a": True}], {}, {"k": None, "l": [False]}]


def _paths(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*at, key)
            yield from _paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*at, i)
            yield from _paths(value, (*at, i))


def _documents() -> list[tuple[str, Any]]:
    found: dict[str, Any] = {}
    for path in sorted(EXAMPLE.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in SCHEMA_FILES and doc["kind"] not in found:
                found[doc["kind"]] = doc
    return sorted(found.items())


@pytest.mark.parametrize(("kind", "document"), _documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_no_python_in_any_schema_message(kind: str, document: Any) -> None:
    seen = 0
    for path in list(_paths(document)):
        for wrong in WRONG:
            data = copy.deepcopy(document)
            parent = data
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = wrong
            docs, problems = parse("doc.yaml", yaml.safe_dump(data, sort_keys=False).encode())
            assert not problems and len(docs) == 1
            for error in validate(docs[0], kind):
                seen += 1
                assert not PYTHON.search(error.message), (path, wrong, str(error))
    assert seen > 100


# --- only the first cause ---------------------------------------------------------------------------

FRAUD_MODEL = "teams/fraud/models/fraud-scorer.yaml"
FRAUD_MONITOR = "teams/fraud/monitors/fraud-scorer.yaml"


def _example(**changes: str) -> dict[str, bytes]:
    # the example's SOPS configuration and encrypted Secret are not what these tests are about
    files = {str(p.relative_to(EXAMPLE)): p.read_bytes() for p in EXAMPLE.rglob("*.yaml")
             if p.name != ".sops.yaml" and not p.name.endswith(".enc.yaml")}
    model = files[FRAUD_MODEL].decode()
    traffic = "    traffic: 10   # percent of requests; the stable version takes the rest\n"
    assert traffic in model
    files[FRAUD_MODEL] = model.replace(traffic, "  rollout:\n    strategy: canary\n    steps: [10, 50, 100]\n"
                                                "    analysis: {rules: [error-rate, p99-latency]}\n").encode()
    for path, (old, new) in ((FRAUD_MODEL, changes.get("model", ("", ""))),
                             (FRAUD_MONITOR, changes.get("monitor", ("", "")))):
        text = files[path].decode()
        assert old in text
        files[path] = text.replace(old, new, 1).encode()
    return files


def _load_errors(files: dict[str, bytes]) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        load(files)
    return [str(e) for e in caught.value.errors]


def test_the_example_with_a_rollout_loads() -> None:
    spec = load(_example())
    model = next(m for m in spec.models if m.name == "fraud-scorer")
    assert model.rollout is not None and model.rollout.analysis.rules == ("error-rate", "p99-latency")


def test_an_indentation_error_in_a_monitor_is_the_only_error() -> None:
    files = _example(monitor=("      type: errorRate\n", "     type: errorRate\n"))
    assert _load_errors(files) == [f"{FRAUD_MONITOR}:28: (document): invalid YAML: did not find expected '-' "
                                   "indicator"]


def test_a_model_file_that_does_not_parse_is_the_only_error() -> None:
    files = _example(model=("  name: fraud-scorer\n", "  name: fraud-scorer\n   x: 1\n"))
    assert _load_errors(files) == [f"{FRAUD_MODEL}:9: (document): invalid YAML: mapping values are not allowed in "
                                   "this context"]


def test_a_monitor_that_fails_its_schema_hides_no_other_model_s_rules() -> None:
    """The broken Monitor watches another model: fraud-scorer's rules are still checked."""
    files = _example(model=("rules: [error-rate, p99-latency]", "rules: [error-rate, p99]"))
    files["teams/fraud/monitors/other.yaml"] = (
        b"apiVersion: modelops.dev/v1alpha1\nkind: Monitor\nmetadata: {name: other, namespace: fraud}\n"
        b"spec:\n  model: txn-anomaly\n  rules:\n  - {name: x, type: latency\n")
    errors = _load_errors(files)
    assert errors == [
        f"{FRAUD_MODEL}:51: spec.rollout.analysis.rules[1]: rule 'p99' is not a rule of a Monitor of Model "
        "'fraud-scorer' (amount-drift, error-rate, merchant-category-drift, p99-latency)",
        "teams/fraud/monitors/other.yaml:8: (document): invalid YAML: did not find expected ',' or '}'"]


def test_a_runtime_that_fails_is_not_also_missing() -> None:
    files = _example()
    path = "runtimes/sklearn-server.yaml"
    files[path] = files[path].replace(b"kind: ServingRuntime\n", b"kind: ServingRuntime\nextra: 1\n", 1)
    errors = _load_errors(files)
    assert len(errors) == 1 and errors[0].startswith(f"{path}:") and "unknown field 'extra'" in errors[0], errors


def test_a_missing_model_is_still_reported_next_to_an_unrelated_broken_file() -> None:
    files = _example(monitor=("  model: fraud-scorer\n", "  model: fraud-scorr\n"))
    files["infra/broken.yaml"] = b"apiVersion: v1\nkind: ConfigMap\ndata: [\n"
    errors = _load_errors(files)
    assert f"{FRAUD_MONITOR}:13: spec.model: Model 'fraud-scorr' not found in namespace 'fraud'" in errors, errors
