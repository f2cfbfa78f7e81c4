"""A local Kubernetes control plane (etcd, apiserver, controllers, scheduler, kwok).

Real API semantics (server-side apply, schema validation, RBAC, controllers) without
containers: the agent's integration tests and the demo run against it (`devenv cluster up`). See
tools/k8s.
Beside it, a local Gitea (`forge_up`): a real Git forge over HTTPS with its own CA, so the agent
is tested as the Git client it is in production. See tools/gitea.
And a local Prometheus (`prometheus_up`, Debian's package): scrapes test model servers and
evaluates alert rules, for the agent's metrics client and progressive delivery.
And a local MLflow tracking server (`mlflow_up`, from its own venv): the model registry the
agent's registry client resolves references against. See tools/mlflow.
Faults for tests: `pause_apiserver`/`resume_apiserver` (hung: SIGSTOP/SIGCONT) and
`stop_apiserver`/`start_apiserver` (down: connection refused) of one cluster, its data kept; and
`write_kubeconfig`: one kubeconfig with a context per running cluster, named by the caller.
And `sops_binaries`: sops and age (tools/sops), which the tests encrypt model repo Secrets with.
"""

from devenv.cluster._apiserver import pause_apiserver, resume_apiserver, start_apiserver, stop_apiserver
from devenv.cluster._build import binaries, repo_root, sops_binaries
from devenv.cluster._cluster import ClusterInfo, down, status, up
from devenv.cluster._errors import DevclusterError
from devenv.cluster._forge import ForgeInfo, forge_binaries, forge_create_repo, forge_down, forge_up, is_forge
from devenv.cluster._kubeconfig import write_kubeconfig
from devenv.cluster._mlflow import MlflowInfo, mlflow_binaries, mlflow_down, mlflow_up
from devenv.cluster._prometheus import PrometheusInfo, prometheus_down, prometheus_reload, prometheus_up

__all__ = [
    "ClusterInfo", "DevclusterError", "ForgeInfo", "PrometheusInfo", "binaries", "down", "forge_binaries",
    "forge_create_repo", "forge_down", "forge_up", "prometheus_down", "prometheus_reload", "prometheus_up",
    "repo_root", "status", "up",
]
__all__ += ["MlflowInfo", "mlflow_binaries", "mlflow_down", "mlflow_up"]
__all__ += ["sops_binaries"]
__all__ += ["is_forge"]
__all__ += ["pause_apiserver", "resume_apiserver", "start_apiserver", "stop_apiserver", "write_kubeconfig"]
