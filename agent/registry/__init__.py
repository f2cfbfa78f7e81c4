"""Where the agent asks which artifact a model version is: a model registry (an I/O edge).

A Git repo may name a model by registry reference (an MLflow registered model's version or
alias) instead of an artifact URI; the agent resolves the reference to the immutable version,
its artifact URI and its run's metrics (for promotion gates). MLflow is spoken over its REST
API with the standard library: the agent does not depend on the `mlflow` package.
"""

from agent.registry._answer import check_answer
from agent.registry._base import RegistryError, ResolvedVersion
from agent.registry._mlflow import DetailsCache, MlflowRegistry

__all__ = ["DetailsCache", "MlflowRegistry", "RegistryError", "ResolvedVersion", "check_answer"]

from agent.registry._gto import GtoRegistry

__all__ += ["GtoRegistry"]
