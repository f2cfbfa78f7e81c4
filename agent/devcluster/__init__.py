"""A local Kubernetes control plane (etcd, apiserver, controllers, scheduler, kwok).

Real API semantics (server-side apply, schema validation, RBAC, controllers) without
containers: the agent's integration tests and the demo run against it. See tools/k8s.
"""

from agent.devcluster._build import binaries, repo_root
from agent.devcluster._cluster import ClusterInfo, down, status, up
from agent.devcluster._errors import DevclusterError

__all__ = ["ClusterInfo", "DevclusterError", "binaries", "down", "repo_root", "status", "up"]
