"""The real CRDs our rendered objects must satisfy, fetched the way a user gets them.

`bash tools/k8s/crds.sh` prints, as its last stdout line, a cache directory holding the KServe
and Prometheus-Operator CRDs pinned in tools/k8s/crds.env (`<dir>/*.yaml`), read from their Go
modules by `go mod download`: instant when cached, seconds cold. No control-plane build: the
script manages its own cache (under $AGENT_K8S_CACHE, as tools/k8s/build.sh does).

An object is checked twice against its version's `openAPIV3Schema`:
- jsonschema (Draft 4 semantics, which is what OpenAPI v3 schemas in CRDs use; the
  `x-kubernetes-*` extensions are ignored by it), and
- `unknown_fields`: the apiserver prunes (or, with field validation, rejects) any field the
  structural schema does not declare, unless `x-kubernetes-preserve-unknown-fields` allows it.
  jsonschema does not catch that (CRD schemas rarely say `additionalProperties: false`).
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

# ObjectMeta fields a client may send; the apiserver validates metadata itself, whatever the
# CRD schema says about it (usually just `type: object`).
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "labels", "annotations", "finalizers", "ownerReferences",
    "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "managedFields", "selfLink",
})
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@cache
def crd_dir() -> Path:
    script = REPO_ROOT / "tools" / "k8s" / "crds.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tools/k8s/crds.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = proc.stdout.strip().splitlines()
    assert lines, "tools/k8s/crds.sh printed nothing"
    directory = Path(lines[-1])
    if not directory.is_dir() or not list(directory.glob("*.yaml")):
        raise RuntimeError(f"no CRDs in {directory}")
    return directory


@cache
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(group, kind) -> CustomResourceDefinition."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crd_dir().glob("*.yaml")):
        with path.open(encoding="utf-8") as fh:
            for doc in yaml.load_all(fh, Loader=yaml.CSafeLoader):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    out[(doc["spec"]["group"], doc["spec"]["names"]["kind"])] = doc
    return out


def schema(api_version: str, kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of a served version; KeyError/AssertionError if there is none."""
    group, version = api_version.rsplit("/", 1)
    crd = crds()[(group, kind)]
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            assert v.get("served", False), f"{api_version} {kind} is not served"
            return dict(v["schema"]["openAPIV3Schema"])
    served = [v["name"] for v in crd["spec"]["versions"]]
    raise AssertionError(f"{kind}: version {version} not in the CRD (it has {served})")


@cache
def validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    s = schema(api_version, kind)
    # A well-formed Draft 4 schema (its regexes are RE2, e.g. `^(?i)(abort|warn)?$`, which
    # Python's `re` refuses, so no format check of the schema itself).
    jsonschema.Draft4Validator(jsonschema.Draft4Validator.META_SCHEMA).validate(s)
    return jsonschema.Draft4Validator(s)


def unknown_fields(value: Any, node: dict[str, Any], path: str = "", *, root: bool = True) -> list[str]:
    """Dotted paths of fields in `value` that the structural schema `node` does not declare."""
    out: list[str] = []
    if isinstance(value, dict):
        props = node.get("properties") or {}
        extra = node.get("additionalProperties")
        preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(node.get("x-kubernetes-embedded-resource"))
        for key, sub in value.items():
            p = f"{path}.{key}" if path else key
            if (root or embedded) and key in ("apiVersion", "kind"):
                continue
            if (root or embedded) and key == "metadata" and isinstance(sub, dict):
                out.extend(f"{p}.{k}" for k in sub if k not in OBJECT_META_FIELDS)
                continue
            if key in props:
                out.extend(unknown_fields(sub, props[key], p, root=False))
            elif isinstance(extra, dict):
                out.extend(unknown_fields(sub, extra, p, root=False))
            elif extra is True or preserve:
                continue
            else:
                out.append(p)
    elif isinstance(value, list):
        items = node.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                out.extend(unknown_fields(item, items, f"{path}[{i}]", root=False))
    return out


def metadata_problems(meta: Any, path: str = "metadata") -> list[str]:
    """What the apiserver's ObjectMeta validation would refuse: bad names, labels, annotations."""
    if not isinstance(meta, dict):
        return [f"{path}: not a mapping"]
    out: list[str] = []
    name = meta.get("name")
    if not isinstance(name, str) or not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        out.append(f"{path}.name: invalid name {name!r}")
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label = key.rpartition("/")
        if not _LABEL_NAME.match(label) or len(label) > 63 or (prefix and not _DNS_SUBDOMAIN.match(prefix)):
            out.append(f"{path}.labels: invalid label key {key!r}")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            out.append(f"{path}.labels.{key}: invalid label value {value!r}")
    for key, value in (meta.get("annotations") or {}).items():
        if not isinstance(value, str):
            out.append(f"{path}.annotations.{key}: not a string")
    return out


def problems(obj: dict[str, Any]) -> list[str]:
    """Everything the apiserver would refuse or silently drop in this custom resource."""
    api, kind = obj["apiVersion"], obj["kind"]
    v = validator(api, kind)
    out = [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in v.iter_errors(obj)]
    out.extend(f"{p}: unknown field" for p in unknown_fields(obj, schema(api, kind)))
    out.extend(metadata_problems(obj.get("metadata")))
    return out
