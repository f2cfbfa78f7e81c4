"""Shared by every test: the agent's render cache lives in the session's temp dir, never in the
user's ~/.cache, for in-process calls and for every `agent` subprocess (they inherit it); the
example repo's SOPS-encrypted Secret opens with the demo age key (SOPS_AGE_KEY_FILE)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _hermetic_agent_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    previous = os.environ.get("AGENT_CACHE_DIR")
    os.environ["AGENT_CACHE_DIR"] = str(tmp_path_factory.mktemp("agent-cache"))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AGENT_CACHE_DIR", None)
        else:
            os.environ["AGENT_CACHE_DIR"] = previous


DEMO_AGE_KEY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "keys", "demo.agekey")
_SOPS_ENV = ("SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY")
_saved_sops_env: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    """examples/model-repo holds a Secret SOPS-encrypted for the DEMO age key: every test reads
    it as `make demo` does, with SOPS_AGE_KEY_FILE set to that key (and no SOPS_AGE_KEY from the
    user's environment), from collection on (some modules render the example at import). Tests
    of missing or wrong keys set their own environment."""
    _saved_sops_env.update({name: os.environ.get(name) for name in _SOPS_ENV})
    os.environ["SOPS_AGE_KEY_FILE"] = DEMO_AGE_KEY
    os.environ.pop("SOPS_AGE_KEY", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in _saved_sops_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def sops_tools() -> object:
    """The real sops, age and age-keygen (tools/sops/build.sh: cached, built on first use)."""
    from agent import devcluster
    from tests._sops_tools import SopsTools

    return SopsTools(devcluster.sops_binaries() / "bin")
