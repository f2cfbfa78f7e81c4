"""Shared by every test: the agent's render cache lives in the session's temp dir, never in the
user's ~/.cache, for in-process calls and for every `agent` subprocess (they inherit it)."""

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
