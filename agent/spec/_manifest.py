"""Raw Kubernetes manifests -> Manifest: kinds allowed by policy, metadata, namespaces."""

from __future__ import annotations

from typing import Any, cast

from agent.errors import SpecError
from agent.spec import _k8s
from agent.spec._common import check_namespace, location_of
from agent.spec._k8s import CLUSTER_SCOPED
from agent.spec._types import Manifest, RepositoryConfig, group_of
from agent.spec._yaml import Document


def read_manifest(doc: Document, config: RepositoryConfig, errors: list[SpecError]) -> Manifest | None:
    body = cast(dict[str, Any], doc.data)
    kind, api = body["kind"], body["apiVersion"]
    malformed = list(_k8s.type_problems(api, kind))
    if malformed:
        errors.extend(doc.error(path, message) for path, message in malformed)
        return None
    group = group_of(api)
    allowed = config.policy.allowed_kinds
    # a bare Kind covers the built-in API groups only; other groups must be named
    builtin = "." not in group or group.endswith(".k8s.io")
    if not (builtin and kind in allowed) and f"{group}/{kind}" not in allowed:
        shown = ", ".join(allowed) or "none"
        errors.append(doc.error(["kind"], f"kind {group + '/' if group else ''}{kind} is not allowed by policy.allowedKinds ({shown})"))
        return None
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        errors.append(doc.error(["metadata", "name"], "missing metadata.name"))
        return None
    if meta.get("namespace") is not None and not isinstance(meta["namespace"], str):
        errors.append(doc.error(["metadata", "namespace"], "metadata.namespace must be a string"))
        return None
    problems = list(_k8s.metadata_problems(group, kind, meta))
    if _k8s.binds_cluster_admin(group, kind, body) and not config.policy.allow_cluster_admin:
        problems.append((["roleRef", "name"], f"{kind} to the ClusterRole cluster-admin is refused "
                                              "(set policy.allowClusterAdmin: true to allow it)"))
    if problems:
        errors.extend(doc.error(path, message) for path, message in problems)
        return None
    # `labels: null` is Kubernetes' "no labels": leave it out, as the API server does
    body = {**body, "metadata": {k: v for k, v in meta.items() if not (k in _MAPS and v is None)}}
    if kind in CLUSTER_SCOPED:
        if "namespace" in meta:
            errors.append(doc.error(["metadata", "namespace"], f"{kind} is cluster-scoped and takes no namespace"))
            return None
        if kind == "Namespace" and not check_namespace(doc, ["metadata", "name"], meta["name"], config, errors):
            return None
    else:
        ns = meta.get("namespace") or config.default_namespace
        body["metadata"]["namespace"] = ns
        if not check_namespace(doc, ["metadata", "namespace"], ns, config, errors):
            return None
    if kind == "Secret" and "data" in body and not isinstance(body["data"], dict):
        errors.append(doc.error(["data"], "Secret data must be a mapping"))
        return None
    return Manifest(body=body, location=location_of(doc))


_MAPS = ("labels", "annotations")


def manifest_key(m: Manifest) -> str:
    group = group_of(m.api_version)
    return f"{group}/{m.kind}/{m.namespace or ''}/{m.name}"
