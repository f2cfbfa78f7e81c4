"""Malformed and hostile model repos through the real CLI (`agent validate`), in-process.

Every malformed repo must exit 2 with the exact `file:line: field:` of the problem on stderr
and no traceback; git-level failures (no commit, unknown revision, a commit a shallow clone
does not hold) print one clean `error:` line. Inputs that look hostile but are fine (CRLF, a
byte-order mark, a symlink inside the repo, a shallow clone's own commit) must load correctly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.cli import main
from agent.spec._yaml import MAX_FILE_BYTES
from tests.unit.conftest import BASE, CONFIG, MODEL, RUNTIME, t

M = "models/scorer.yaml"
# MODEL's lines: 4 metadata.name, 5 metadata.namespace, 7 spec.format, 8 spec.runtime,
# 9 spec.versions, 10 spec.versions[0].version, 11 spec.versions[0].uri, 12 spec.stable;
# lines appended to it start at 13.


def model(old: str = "", new: str = "", extra: str = "") -> str:
    """The baseline Model with one text replaced and spec lines appended (from line 13)."""
    text = MODEL.replace(old, new) if old else MODEL
    assert not old or text != MODEL, old
    return text + extra


def cm(meta: str, *, kind: str = "ConfigMap", api: str = "v1", rest: str = "") -> str:
    """A raw manifest; `meta` holds the metadata lines (from line 4)."""
    return f"apiVersion: {api}\nkind: {kind}\nmetadata:\n{meta}{rest}"


def monitor(rule: str) -> str:
    """A Monitor of the baseline model with one rule (on line 6)."""
    return ("apiVersion: modelops.dev/v1alpha1\nkind: Monitor\nmetadata: {name: mon, namespace: fraud}\n"
            f"spec:\n  model: scorer\n  rules: [{{name: lat, type: latency, {rule}}}]\n")


def with_policy(policy_lines: str) -> str:
    return CONFIG + policy_lines


CANARY = model(extra='  canary: {version: "2", traffic: TRAFFIC}\n').replace(
    '  stable: "1"\n', '    - {version: "2", uri: "s3://models/scorer/2/", evaluation: {auc: AUC}}\n  stable: "1"\n'
).replace("uri: s3://models/scorer/1/\n", "uri: s3://models/scorer/1/\n      evaluation: {auc: 0.95}\n")
# CANARY: line 13 is version 2 (with its evaluation), 14 stable, 15 canary; gates appended at 16


def canary(traffic: str = "10", auc: str = "0.95", gates: str = "") -> str:
    return CANARY.replace("TRAFFIC", traffic).replace("AUC", auc) + gates


CRB = t("""
    apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRoleBinding
    metadata: {name: everyone-admin}
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
    subjects: [{kind: Group, name: "system:authenticated", apiGroup: rbac.authorization.k8s.io}]
    """)


def _symlink(rel: str, target: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / rel)
    return make


def _many_tiny_files(root: Path) -> None:
    for i in range(5000):
        path = root / "infra" / f"d{i // 500}" / f"cm{i}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm{i}, namespace: fraud}}\n")
    (root / "infra" / "d7" / "cm3999.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm3999, namespace: fraud}\ndata: {x: .nan}\n")


def _linked_model(root: Path) -> None:
    """The Model lives in shared/scorer.txt (not read by itself); models/alias.yaml links to it."""
    (root / "shared").mkdir()
    (root / M).rename(root / "shared" / "scorer.txt")
    os.symlink("../shared/scorer.txt", root / "models" / "alias.yaml")


@dataclass
class Case:
    id: str
    files: Mapping[str, str | bytes]
    prefix: str  # the start of one stderr line: "file:line: field:"
    setup: Callable[[Path], None] | None = None
    drop: tuple[str, ...] = field(default=())  # baseline files to leave out


MALFORMED = [
    # --- wrong types in every Model field
    Case("name-int", {M: model("name: scorer", "name: 42")}, f'{M}:4: metadata.name: 42 is a number, expected a string (quote it: "42")'),
    Case("namespace-list", {M: model("namespace: fraud", "namespace: [fraud]")}, f"{M}:5: metadata.namespace:"),
    Case("format-int", {M: model("format: sklearn", "format: 1")}, f'{M}:7: spec.format: 1 is a number, expected a string (quote it: "1")'),
    Case("runtime-bool", {M: model("runtime: sklearn-server", "runtime: true")}, f"{M}:8: spec.runtime:"),
    Case("versions-string", {M: model('versions:\n    - version: "1"\n      uri: s3://models/scorer/1/\n', 'versions: "1"\n')},
         f"{M}:9: spec.versions: '1' is a string, expected a list"),
    Case("version-int", {M: model('version: "1"', "version: 1")}, f'{M}:10: spec.versions[0].version: 1 is a number, expected a string (quote it: "1")'),
    Case("uri-int", {M: model("uri: s3://models/scorer/1/", "uri: 5")}, f"{M}:11: spec.versions[0].uri: 5 is a number, expected a string"),
    Case("uri-scheme", {M: model("uri: s3://", "uri: file://")}, f"{M}:11: spec.versions[0].uri: 'file://models"),
    Case("stable-float", {M: model('stable: "1"', "stable: 1.0")}, f'{M}:12: spec.stable: 1.0 is a number, expected a string (quote it: "1.0")'),
    Case("backend-enum", {M: model(extra="  backend: gke\n")}, f"{M}:13: spec.backend: 'gke' is not one of"),
    Case("stage-int", {M: model(extra="  stage: 3\n")}, f"{M}:13: spec.stage: 3 is not one of"),
    Case("owner-list", {M: model(extra="  owner: []\n")}, f"{M}:13: spec.owner: [] is a list, expected a string"),
    Case("format-version-number", {M: model(extra="  formatVersion: 2\n")}, f"{M}:13: spec.formatVersion: 2 is a number, expected a string"),
    Case("replicas-string", {M: model(extra="  replicas: two\n")}, f"{M}:13: spec.replicas: 'two' is a string, expected an integer"),
    Case("replicas-negative", {M: model(extra="  replicas: -1\n")}, f"{M}:13: spec.replicas: -1 is less than the minimum of 0"),
    Case("replicas-huge", {M: model(extra=f"  replicas: {10 ** 30}\n")}, f"{M}:13: spec.replicas: integer out of range"),
    Case("replicas-and-autoscaling", {M: model(extra="  replicas: 2\n  autoscaling: {min: 1, max: 3}\n")},
         f"{M}:6: spec: replicas and autoscaling are mutually exclusive"),
    Case("autoscaling-type", {M: model(extra="  autoscaling: {min: a, max: 2}\n")}, f"{M}:13: spec.autoscaling.min: 'a' is a string, expected an integer"),
    Case("autoscaling-min-over-max", {M: model(extra="  autoscaling: {min: 5, max: 2}\n")},
         f"{M}:13: spec.autoscaling.min: min (5) is greater than max (2)"),
    Case("cpu-quantity", {M: model(extra="  resources: {cpu: 1core}\n")}, f"{M}:13: spec.resources.cpu: '1core' is not valid"),
    Case("gpu-float", {M: model(extra="  resources: {gpu: 1.5}\n")}, f"{M}:13: spec.resources.gpu: 1.5 is a number, expected an integer"),
    Case("env-int-value", {M: model(extra="  env: {THREADS: 2}\n")}, f'{M}:13: spec.env.THREADS: 2 is a number, expected a string (quote it: "2")'),
    Case("env-list", {M: model(extra="  env: [A]\n")}, f"{M}:13: spec.env: [A] is a list, expected a mapping"),
    Case("gates-mapping", {M: model(extra="  gates: {metric: auc}\n")}, f"{M}:13: spec.gates: {{metric: auc}} is a mapping, expected a list"),
    Case("service-account", {M: model(extra="  serviceAccountName: Bad_SA\n")}, f"{M}:13: spec.serviceAccountName: 'Bad_SA' must be a DNS name: lowercase letters, digits, '-' and '.'"),
    Case("digest-md5", {M: model("uri: s3://models/scorer/1/", "uri: s3://models/scorer/1/\n      digest: md5:abc")},
         f"{M}:12: spec.versions[0].digest: 'md5:abc' must be 'sha256:' and 64 lowercase hex digits"),
    Case("evaluation-string", {M: canary(auc="high")}, f"{M}:13: spec.versions[1].evaluation.auc: 'high' is a string, expected a number"),
    Case("labels-int-value", {M: model("  namespace: fraud\n", "  namespace: fraud\n  labels: {tier: 1}\n")},
         f'{M}:6: metadata.labels.tier: 1 is a number, expected a string (quote it: "1")'),
    Case("annotation-key", {M: model("  namespace: fraud\n", "  namespace: fraud\n  annotations: {'bad key': x}\n")},
         f"{M}:6: metadata.annotations.bad key: invalid key 'bad key'"),
    Case("annotation-int-value", {M: model("  namespace: fraud\n", "  namespace: fraud\n  annotations: {a: 1}\n")},
         f'{M}:6: metadata.annotations.a: 1 is a number, expected a string (quote it: "1")'),
    Case("canary-version-int", {M: canary().replace('{version: "2", traffic', "{version: 2, traffic")},
         f'{M}:15: spec.canary.version: 2 is a number, expected a string (quote it: "2")'),
    Case("gate-metric-int", {M: canary(gates="  gates: [{metric: 1, min: 0.5}]\n")}, f'{M}:16: spec.gates[0].metric: 1 is a number, expected a string (quote it: "1")'),
    Case("gate-min-string", {M: canary(gates="  gates: [{metric: auc, min: high}]\n")}, f"{M}:16: spec.gates[0].min: 'high' is a string, expected a number"),
    Case("autoscaling-target-string", {M: model(extra="  autoscaling: {min: 1, max: 2, target: lots}\n")},
         f"{M}:13: spec.autoscaling.target: 'lots' is a string, expected an integer"),
    Case("autoscaling-metric-enum", {M: model(extra="  autoscaling: {min: 1, max: 2, metric: gpu}\n")},
         f"{M}:13: spec.autoscaling.metric: 'gpu' is not one of"),
    Case("unknown-spec-field", {M: model(extra="  replica: 2\n")}, f"{M}:13: spec.replica: unknown field 'replica'"),
    Case("canary-traffic-150", {M: canary(traffic="150")}, f"{M}:15: spec.canary.traffic: 150 is greater than the maximum of 100"),
    Case("canary-is-stable", {M: canary().replace('version: "2", traffic', 'version: "1", traffic')},
         f"{M}:15: spec.canary.version: canary version '1' is the stable version"),
    # --- names
    Case("uppercase-name", {M: model("name: scorer", "name: Scorer")}, f"{M}:4: metadata.name: 'Scorer' must be lowercase letters, digits and '-', starting with a letter"),
    Case("unicode-name", {M: model("name: scorer", "name: scörer")}, f"{M}:4: metadata.name: 'scörer' must be lowercase letters"),
    Case("name-trailing-newline", {M: model("name: scorer", 'name: "scorer\\n"')}, f'{M}:4: metadata.name: "scorer\\n" must be lowercase letters'),
    Case("name-too-long", {M: model("name: scorer", f"name: {'s' * 64}")}, f"{M}:4: metadata.name: '{'s' * 64}' is too long"),
    # --- non-finite and out-of-range numbers (issue #7 item 7)
    Case("evaluation-nan", {M: canary(auc=".nan", gates="  gates: [{metric: auc, min: 0.93}]\n")},
         f"{M}:13: spec.versions[1].evaluation.auc: .nan is not a finite number"),
    Case("gate-min-nan", {M: canary(gates="  gates: [{metric: auc, min: .nan}]\n")}, f"{M}:16: spec.gates[0].min: .nan is not a finite number"),
    Case("evaluation-huge-int", {M: canary(auc="9" * 400)}, f"{M}:13: spec.versions[1].evaluation.auc: integer out of range"),
    Case("monitor-threshold-inf", {"monitors/mon.yaml": monitor("threshold: .inf")},
         "monitors/mon.yaml:6: spec.rules[0].threshold: .inf is not a finite number"),
    Case("monitor-threshold-nan", {"monitors/mon.yaml": monitor("threshold: .nan")},
         "monitors/mon.yaml:6: spec.rules[0].threshold: .nan is not a finite number"),
    Case("monitor-quantile-nan", {"monitors/mon.yaml": monitor("threshold: 0.5, quantile: .nan")},
         "monitors/mon.yaml:6: spec.rules[0].quantile: .nan is not a finite number"),
    Case("monitor-field-of-another-type", {"monitors/mon.yaml": monitor("threshold: 0.5, feature: x")},
         "monitors/mon.yaml:6: spec.rules[0].feature: field not allowed here"),
    Case("runtime-port-inf", {"runtimes/sklearn.yaml": RUNTIME + "  port: .inf\n"}, "runtimes/sklearn.yaml:8: spec.port: .inf is not a finite number"),
    Case("config-budget-nan", {"repo.yaml": with_policy("    pruneBudget: {maxFraction: .nan}\n")},
         "repo.yaml:8: spec.policy.pruneBudget.maxFraction: .nan is not a finite number"),
    # --- policy
    Case("namespace-kube-system", {M: model("namespace: fraud", "namespace: kube-system")},
         f"{M}:5: metadata.namespace: namespace 'kube-system' is not allowed by policy.allowedNamespaces"),
    Case("kube-system-without-policy", {M: model("namespace: fraud", "namespace: kube-system")},
         f"{M}:5: metadata.namespace: namespace 'kube-system' belongs to the cluster", drop=("repo.yaml",)),
    Case("cluster-admin-binding", {"infra/crb.yaml": CRB},
         "infra/crb.yaml:2: kind: kind rbac.authorization.k8s.io/ClusterRoleBinding is not allowed by policy.allowedKinds"),
    Case("cluster-admin-binding-kind-allowed", {"infra/crb.yaml": CRB,
                                                "repo.yaml": with_policy("    allowedKinds: [ClusterRoleBinding]\n")},
         "infra/crb.yaml:4: roleRef.name: ClusterRoleBinding to the ClusterRole cluster-admin is refused"),
    Case("namespace-on-cluster-scoped", {"infra/ns.yaml": cm("  name: fraud\n  namespace: fraud\n", kind="Namespace")},
         "infra/ns.yaml:5: metadata.namespace: Namespace is cluster-scoped and takes no namespace"),
    Case("raw-kind-not-allowed", {"infra/d.yaml": cm("  name: d\n  namespace: fraud\n", kind="Deployment", api="apps/v1")},
         "infra/d.yaml:2: kind: kind apps/Deployment is not allowed by policy.allowedKinds"),
    # --- raw manifest metadata (issue #7 item 10)
    Case("raw-bad-name", {"infra/cm.yaml": cm("  name: BadName\n  namespace: fraud\n")},
         "infra/cm.yaml:4: metadata.name: 'BadName' is not a valid ConfigMap name"),
    Case("raw-service-dotted-name", {"infra/svc.yaml": cm("  name: a.b\n  namespace: fraud\n", kind="Service")},
         "infra/svc.yaml:4: metadata.name: 'a.b' is not a valid Service name"),
    Case("raw-label-value", {"infra/cm.yaml": cm(f"  name: cm\n  namespace: fraud\n  labels: {{a: {'x' * 64}}}\n")},
         "infra/cm.yaml:6: metadata.labels.a: label value"),
    Case("raw-generate-name", {"infra/cm.yaml": cm("  generateName: cm-\n  namespace: fraud\n  name: cm\n")},
         "infra/cm.yaml:4: metadata.generateName: generateName is not supported"),
    Case("raw-resource-version", {"infra/cm.yaml": cm("  name: cm\n  namespace: fraud\n  resourceVersion: '7'\n")},
         "infra/cm.yaml:6: metadata.resourceVersion: metadata.resourceVersion is set by the API server"),
    Case("raw-api-version-malformed", {"infra/d.yaml": cm("  name: d\n  namespace: fraud\n", kind="ConfigMap", api="core/v1/x")},
         "infra/d.yaml:1: apiVersion: 'core/v1/x' is not a valid apiVersion"),
    Case("raw-no-name", {"infra/cm.yaml": "apiVersion: v1\nkind: ConfigMap\ndata: {}\n"}, "infra/cm.yaml:1: metadata.name: missing metadata.name"),
    Case("secret-data-list", {"infra/s.yaml": cm("  name: s\n  namespace: fraud\n", kind="Secret", rest="data: [a]\n")},
         "infra/s.yaml:6: data: Secret data must be a mapping"),
    # --- YAML itself
    Case("python-object-tag", {"infra/cm.yaml": cm("  name: cm\n  namespace: fraud\n", rest="data: {x: !!python/object/apply:os.system [id]}\n")},
         "infra/cm.yaml:6: data.x: unsupported YAML tag '!!python/object/apply:os.system'"),
    Case("binary-tag", {"infra/cm.yaml": cm("  name: cm\n  namespace: fraud\n", rest="data: {x: !!binary aGk=}\n")},
         "infra/cm.yaml:6: data.x: unsupported YAML tag '!!binary'"),
    Case("bad-int-tag", {M: model(extra="  replicas: !!int two\n")}, f"{M}:13: spec.replicas: 'two' is not a valid !!int"),
    Case("document-is-a-list", {"list.yaml": "- apiVersion: v1\n- kind: ConfigMap\n"},
         "list.yaml:1: (document): each YAML document must be a mapping with apiVersion and kind"),
    Case("document-is-a-string", {"str.yaml": "just text\n"}, "str.yaml:1: (document): each YAML document must be a mapping"),
    Case("deep-nesting", {M: model(extra="  env: " + "{a: " * 150 + "x" + "}" * 150 + "\n")},
         f"{M}:13: spec.env.a: document nests more than 100 levels deep"),
    Case("deep-flow-sequences", {"deep.yaml": "x: " + "[" * 5000 + "]" * 5000 + "\n"}, "deep.yaml:1: (document): invalid YAML: exceeded maximum nesting depth"),
    Case("alias", {M: model(extra="  owner: &o team\n  formatVersion: *o\n")}, f"{M}:14: spec.formatVersion: YAML aliases (*name) are not allowed"),
    Case("merge-key", {"infra/cm.yaml": cm("  name: cm\n  namespace: fraud\n", rest="data:\n  <<: {a: b}\n")},
         "infra/cm.yaml:7: data: YAML merge keys (<<) are not allowed"),
    Case("duplicate-key", {M: model(extra='  stable: "2"\n')}, f"{M}:13: spec.stable: duplicate key 'stable' in the same mapping"),
    Case("non-utf8", {"bad.yaml": b"apiVersion: v1\nkind: ConfigMap\n# \xff\n"}, "bad.yaml:3: (document): not valid UTF-8 (byte 0xff at offset 33)"),
    Case("nul-byte", {"nul.yaml": b"apiVersion: v1\n\x00kind: ConfigMap\n"}, "nul.yaml:2: (document): invalid YAML: unacceptable character #x0000"),
    Case("utf16", {"u16.yaml": "apiVersion: v1\n".encode("utf-16")}, "u16.yaml:1: (document): not valid UTF-8 (byte 0xff at offset 0)"),
    Case("syntax-error", {"bad.yaml": "a: [1, 2\nb: 3\n"}, "bad.yaml:2: (document): invalid YAML:"),
    Case("crlf-with-error", {M: model(extra="  replicas: -1\n").replace("\n", "\r\n").encode()},
         f"{M}:13: spec.replicas: -1 is less than the minimum of 0"),
    Case("bom-with-error", {M: ("\ufeff" + model("name: scorer", "name: Scorer")).encode()}, f"{M}:4: metadata.name: 'Scorer' must be lowercase letters, digits and '-', starting with a letter"),
    Case("file-over-limit", {"big.yaml": b"# " + b"x" * MAX_FILE_BYTES}, f"big.yaml:1: (document): file is {MAX_FILE_BYTES + 2} bytes, over the limit"),
    # --- kinds and references
    Case("unknown-kind", {"x.yaml": "apiVersion: modelops.dev/v1alpha1\nkind: Modle\nmetadata: {name: x}\n"},
         "x.yaml:2: kind: unknown kind 'Modle' for modelops.dev/v1alpha1"),
    Case("unsupported-version", {"x.yaml": "apiVersion: modelops.dev/v2\nkind: Model\n"}, "x.yaml:1: apiVersion: unsupported version 'modelops.dev/v2'"),
    Case("missing-api-version", {"x.yaml": "kind: ConfigMap\nmetadata: {name: x}\n"}, "x.yaml:1: apiVersion: missing or empty apiVersion"),
    Case("two-repository-configs", {"repo2.yaml": CONFIG}, "repo2.yaml:2: kind: only one RepositoryConfig is allowed (first at repo.yaml:1)"),
    Case("duplicate-model-across-files", {"models/copy.yaml": MODEL}, "models/scorer.yaml:1: metadata.name: duplicate Model 'fraud/scorer' (first declared at models/copy.yaml:1)"),
    Case("missing-runtime", {M: model("runtime: sklearn-server", "runtime: torch-server")},
         f"{M}:8: spec.runtime: ServingRuntime 'torch-server' not found in the repo (sklearn-server)"),
    Case("monitor-of-missing-model", {"monitors/mon.yaml": monitor("threshold: 0.5").replace("model: scorer", "model: ghost")},
         "monitors/mon.yaml:5: spec.model: Model 'ghost' not found in namespace 'fraud'"),
    # --- the file tree
    Case("5000-tiny-files", {}, "infra/d7/cm3999.yaml:4: data.x: .nan is not a finite number", setup=_many_tiny_files),
    Case("symlink-to-etc-passwd", {}, "infra/passwd.yaml:1: (document): symlink points outside the repository (/etc/passwd)",
         setup=_symlink("infra/passwd.yaml", "/etc/passwd")),
    Case("symlink-to-git-config", {}, "infra/config.yaml:1: (document): symlink points into a .git directory (../.git/config)",
         setup=_symlink("infra/config.yaml", "../.git/config")),
    Case("symlink-to-a-directory", {}, "runtimes.yaml:1: (document): symlink target 'runtimes' is not a regular file",
         setup=_symlink("runtimes.yaml", "runtimes")),
]

ACCEPTED = [
    Case("crlf", {M: MODEL.replace("\n", "\r\n").encode()}, ""),
    Case("bom", {M: ("\ufeff" + MODEL).encode()}, ""),
    Case("symlink-inside", {}, "", setup=_linked_model),
    Case("null-labels-on-a-raw-manifest", {"infra/cm.yaml": cm("  name: cm\n  namespace: fraud\n  labels: null\n")}, ""),
    Case("creation-timestamp-null-and-dates", {"infra/cm.yaml": cm("  name: cm\n  namespace: fraud\n  creationTimestamp: null\n",
                                                                   rest="data: {since: 2024-01-31}\n")}, ""),
]


def write_repo(root: Path, case: Case) -> Path:
    entries: dict[str, str | bytes] = {k: v for k, v in BASE.items() if k not in case.drop}
    entries.update(case.files)
    for rel, content in entries.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    if case.setup:
        case.setup(root)
    return root


def validate(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_there_are_at_least_50_distinct_malformed_repos() -> None:
    assert len({c.id for c in MALFORMED}) == len(MALFORMED) >= 50


@pytest.mark.parametrize("case", MALFORMED, ids=lambda c: c.id)
def test_malformed_repo_exits_2_naming_file_line_and_field(case: Case, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = write_repo(tmp_path / "repo", case)
    code, out, err = validate([str(root)], capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.startswith("error: "), err
    assert any(line.startswith(case.prefix) for line in err.splitlines()), err


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.id)
def test_hostile_looking_but_valid_repo_loads(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_repo(tmp_path / "repo", case)
    code, out, err = validate([str(root)], capsys)
    assert (code, err) == (0, ""), err
    assert out.startswith(f"ok: {root} @ working-tree: 1 models, 0 monitors, 1 runtimes"), out


def test_symlinked_model_is_read_from_its_target(tmp_path: Path) -> None:
    from agent.source import DirectorySource

    root = write_repo(tmp_path / "repo", next(c for c in ACCEPTED if c.id == "symlink-inside"))
    snap = DirectorySource(root).snapshot()
    assert snap.files["models/alias.yaml"] == MODEL.encode() and snap.problems == []


def test_crlf_and_bom_give_the_same_spec_as_plain_text() -> None:
    from agent.spec import load

    plain = load({k: v.encode() if isinstance(v, str) else v for k, v in BASE.items()})
    for variant in (MODEL.replace("\n", "\r\n"), "\ufeff" + MODEL):
        spec = load({**{k: v.encode() if isinstance(v, str) else v for k, v in BASE.items()}, M: variant.encode()})
        assert spec.models == plain.models


# --- git-level failures: one clean line, no file:line -------------------------------------------

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.com",
           "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@example.com"}
    cmd = ["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main",
           "-c", "protocol.file.allow=always", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def history(tmp_path: Path, cache: Path) -> Path:
    """A repo with two commits of the baseline (the second adds a ConfigMap)."""
    root = write_repo(tmp_path / "origin", Case("base", {}, ""))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "one")
    (root / "infra").mkdir()
    (root / "infra" / "cm.yaml").write_text(cm("  name: cm\n  namespace: fraud\n"))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "two")
    return root


def _one_clean_error(code: int, err: str, text: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and text in err, err


@needs_git
def test_empty_git_repository(tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q")
    code, _, err = validate([str(root), "--revision", "HEAD"], capsys)
    _one_clean_error(code, err, "unknown revision 'HEAD'")


@needs_git
@pytest.mark.parametrize("revision", ["no-such-branch", "deadbeef" * 5, "HEAD~5", "HEAD:repo.yaml", "gone@{upstream}",
                                      "--output=x"])
def test_revision_that_does_not_exist(history: Path, revision: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = validate([str(history), f"--revision={revision}"], capsys)
    _one_clean_error(code, err, f"unknown revision {revision!r}")


@needs_git
def test_revision_of_a_file_is_not_a_directory(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = validate([str(history / "repo.yaml"), "--revision", "HEAD"], capsys)
    _one_clean_error(code, err, "repo.yaml: not a directory")


@needs_git
def test_shallow_clone(history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{history}", str(clone))
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"
    # the commit the clone holds is valid and reads like the original
    code, out, err = validate([str(clone), "--revision", "HEAD"], capsys)
    assert (code, err) == (0, ""), err
    assert "1 models, 0 monitors, 1 runtimes, 1 manifests" in out
    # its parent is named by the commit but absent: a clean error, not a traceback
    code, _, err = validate([str(clone), "--revision", "HEAD~1"], capsys)
    _one_clean_error(code, err, "unknown revision 'HEAD~1'")
    parent = git(history, "rev-parse", "HEAD~1")
    code, _, err = validate([str(clone), "--revision", parent], capsys)
    _one_clean_error(code, err, f"unknown revision {parent!r}")
