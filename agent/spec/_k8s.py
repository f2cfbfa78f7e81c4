"""Kubernetes' own rules for object metadata, checked offline so that a commit the API server
would refuse in part is refused whole before anything is applied (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from agent.spec._messages import why_not_a_string

# Built-in kinds (and KServe's cluster kinds) that have no namespace.
CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "ComponentStatus",
    "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "APIService",
    "PriorityClass", "StorageClass", "CSIDriver", "CSINode", "VolumeAttachment", "VolumeAttributesClass",
    "IngressClass", "RuntimeClass", "IPAddress", "ServiceCIDR",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
    "CertificateSigningRequest", "ClusterTrustBundle",
    "FlowSchema", "PriorityLevelConfiguration",
    "DeviceClass", "ResourceSlice", "StorageVersion", "StorageVersionMigration",
    "TokenReview", "SubjectAccessReview", "SelfSubjectAccessReview", "SelfSubjectRulesReview",
    "SelfSubjectReview",
    "ClusterServingRuntime", "ClusterStorageContainer", "ClusterLocalModel",
})

# Namespaces of the cluster itself: refused unless policy.allowedNamespaces names them exactly.
PROTECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})

MAX_ANNOTATIONS_BYTES = 256 * 1024  # total size of keys and values, as the API server counts it

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]{0,62}")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")

_DNS1123_LABEL_RULE = "a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
_DNS1035_LABEL_RULE = "a DNS-1035 label: at most 63 lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
_SUBDOMAIN_RULE = ("a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' and '.', "
                   "each dot-separated part starting and ending with a letter or digit")
_PATH_SEGMENT_RULE = "any name but '.' and '..' without '/' or '%'"

# Fields the API server sets; in a manifest they make the apply fail (resourceVersion: 409)
_SERVER_FIELDS = ("uid", "resourceVersion", "generation", "selfLink", "managedFields",
                  "deletionTimestamp", "deletionGracePeriodSeconds")


def dns1123_label(value: str) -> bool:
    return len(value) <= 63 and _DNS1123_LABEL.fullmatch(value) is not None


def dns1035_label(value: str) -> bool:
    return len(value) <= 63 and _DNS1035_LABEL.fullmatch(value) is not None


def dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(value) is not None


def _path_segment(value: str) -> bool:
    return value not in (".", "..") and "/" not in value and "%" not in value


def type_problems(api_version: str, kind: str) -> Iterator[Problem]:
    """apiVersion `[group/]version` (group a DNS subdomain, version a DNS-1035 label) and a
    CamelCase kind: anything else names no API the server has."""
    group, slash, version = api_version.rpartition("/")
    if (slash and not dns1123_subdomain(group)) or not dns1035_label(version):
        yield ["apiVersion"], (f"{api_version!r} is not a valid apiVersion: [group/]version, the group a DNS "
                               "subdomain, the version such as v1 or v1beta1")
    if _KIND.fullmatch(kind) is None:
        yield ["kind"], f"{kind!r} is not a valid kind: a letter followed by letters and digits, such as ConfigMap"


def name_rule(group: str, kind: str) -> tuple[Any, str]:
    """The validation the API server applies to the name of an object of this kind."""
    if group == "" and kind == "Service":
        return dns1035_label, _DNS1035_LABEL_RULE
    if group == "" and kind == "Namespace":
        return dns1123_label, _DNS1123_LABEL_RULE
    if group == "rbac.authorization.k8s.io":  # e.g. system:aggregate-to-view
        return _path_segment, _PATH_SEGMENT_RULE
    return dns1123_subdomain, _SUBDOMAIN_RULE


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid label or annotation key ([prefix/]name), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and not dns1123_subdomain(prefix):
        return f"key {key!r}: the prefix before '/' must be {_SUBDOMAIN_RULE}"
    if not name or len(name) > 63 or _QUALIFIED_NAME.fullmatch(name) is None:
        return (f"key {key!r}: the name must be 1-63 letters, digits, '-', '_' and '.', "
                "starting and ending with a letter or digit (with an optional DNS subdomain prefix and '/')")
    return None


def label_value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"label values must be strings ({why_not_a_string(value)})"
    if value and (len(value) > 63 or _QUALIFIED_NAME.fullmatch(value) is None):
        return (f"label value {value!r} must be empty or 1-63 letters, digits, '-', '_' and '.', "
                "starting and ending with a letter or digit")
    return None


def annotations_size_problem(annotations: Any) -> str | None:
    if not isinstance(annotations, dict):
        return None
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items() if isinstance(v, str))
    if size > MAX_ANNOTATIONS_BYTES:
        return f"annotations total {size} bytes, over the limit of {MAX_ANNOTATIONS_BYTES}"
    return None


Problem = tuple[list[str | int], str]


def metadata_problems(group: str, kind: str, meta: dict[str, Any]) -> Iterator[Problem]:
    """What the API server would refuse in the metadata of a raw manifest (name already checked
    to be a non-empty string)."""
    name = meta["name"]
    valid, rule = name_rule(group, kind)
    if not valid(name):
        yield ["metadata", "name"], f"{name!r} is not a valid {kind} name: {rule}"
    if "generateName" in meta:
        yield ["metadata", "generateName"], "generateName is not supported: the agent needs a fixed name to track an object"
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and namespace and not dns1123_label(namespace):  # "" means the default
        yield ["metadata", "namespace"], f"{namespace!r} is not a valid namespace: {_DNS1123_LABEL_RULE}"
    for field in _SERVER_FIELDS:
        if field in meta:
            yield ["metadata", field], f"metadata.{field} is set by the API server: remove it"
    if meta.get("creationTimestamp") is not None:  # `creationTimestamp: null` from kubectl is harmless
        yield ["metadata", "creationTimestamp"], "metadata.creationTimestamp is set by the API server: remove it"
    yield from _map_problems(meta, "labels", label_value_problem)
    yield from _map_problems(meta, "annotations", _annotation_value_problem)
    size = annotations_size_problem(meta.get("annotations"))
    if size:
        yield ["metadata", "annotations"], size


def _annotation_value_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    return f"annotation values must be strings ({why_not_a_string(value)})"


def _map_problems(meta: dict[str, Any], field: str, value_problem: Any) -> Iterator[Problem]:
    if field not in meta or meta[field] is None:
        return
    entries = meta[field]
    if not isinstance(entries, dict):
        yield ["metadata", field], f"metadata.{field} must be a mapping of strings to strings"
        return
    for key, value in entries.items():
        problem = label_key_problem(key) or value_problem(value)
        if problem:
            yield ["metadata", field, key], problem


def binds_cluster_admin(group: str, kind: str, body: dict[str, Any]) -> bool:
    """A RoleBinding or ClusterRoleBinding whose role is the ClusterRole cluster-admin."""
    if group != "rbac.authorization.k8s.io" or kind not in ("RoleBinding", "ClusterRoleBinding"):
        return False
    ref = body.get("roleRef")
    return isinstance(ref, dict) and ref.get("kind") == "ClusterRole" and ref.get("name") == "cluster-admin"
