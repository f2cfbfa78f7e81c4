"""Shared by every test: the agent's render cache lives in the session's temp dir, never in the
user's ~/.cache, for in-process calls and for every `agent` subprocess (they inherit it); the
example repo's SOPS-encrypted Secret opens with the demo age key (SOPS_AGE_KEY_FILE); and what
every `agent` command of a test prints is scanned for Python (dict reprs, `[Errno N]`,
tracebacks, `None` as a choice, issue numbers)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import agent.cli
from tests._python_text import python_in


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
    config.addinivalue_line("markers", "python_output_ok: the test provokes Python text in the output on purpose")
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
    from devenv import cluster as devcluster
    from tests._sops_tools import SopsTools

    return SopsTools(devcluster.sops_binaries() / "bin")


# --- no Python in what the agent prints ---------------------------------------------------------
# Every `agent` command a test runs, in-process (agent.cli.main, however imported) or as a
# subprocess (`python -m agent ...` / `agent ...` through subprocess.run with its output captured),
# has its stdout and stderr recorded; so has every log record of the agent's loggers that is
# emitted. After each test they are scanned for Python leaking into user-facing text: dict or
# list reprs, `[Errno N]`, a traceback, `None` offered as a choice, an issue number. A failure
# is reported at the test's teardown, naming the test, the command and the offending line. A
# test that must provoke such text (an internal error on purpose) is marked `python_output_ok`.

_recorded: list[tuple[str, str]] = []  # (what ran, what it printed) during the current test


class _Tee:
    """A stream that writes through to `inner` and keeps a copy."""

    def __init__(self, inner: Any, sink: list[str]) -> None:
        self._inner = inner
        self._sink = sink

    def write(self, text: str) -> int:
        self._sink.append(text)
        written: int = self._inner.write(text)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _recording(real: Callable[..., int]) -> Callable[..., int]:
    @functools.wraps(real)
    def main(argv: Sequence[str] | None = None) -> int:
        sink: list[str] = []
        out, err = sys.stdout, sys.stderr
        tee_out, tee_err = _Tee(out, sink), _Tee(err, sink)
        sys.stdout, sys.stderr = tee_out, tee_err  # type: ignore[assignment]
        try:
            return real(argv)
        finally:
            if sys.stdout is tee_out:
                sys.stdout = out
            if sys.stderr is tee_err:
                sys.stderr = err
            _recorded.append(("agent " + " ".join(map(str, argv if argv is not None else sys.argv[1:])),
                              "".join(sink)))

    return main


agent.cli.main = _recording(agent.cli.main)  # before any test module does `from agent.cli import main`


def _agent_argv(args: Any) -> list[str] | None:
    """The arguments of an `agent` command line (`agent ...`, `python -m agent ...`), else None."""
    if isinstance(args, (str, bytes, os.PathLike)):
        return None
    argv = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args]
    if argv and os.path.basename(argv[0]) == "agent":
        return argv[1:]
    if argv[1:3] == ["-m", "agent"]:
        return argv[3:]
    return None


_real_run = subprocess.run


def _run_recorded(*popenargs: Any, **kwargs: Any) -> Any:
    done = _real_run(*popenargs, **kwargs)
    argv = _agent_argv(popenargs[0] if popenargs else kwargs.get("args"))
    if argv is not None:
        text = "".join(s if isinstance(s, str) else s.decode("utf-8", "replace")
                       for s in (done.stdout, done.stderr) if s)
        _recorded.append(("agent " + " ".join(argv), text))
    return done


class _LogRecorder(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a broken format is the test's business, not the scan's
            _recorded.append((f"log {record.name}", record.getMessage()))


@pytest.fixture(autouse=True)
def _no_python_in_output(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _recorded.clear()
    monkeypatch.setattr(subprocess, "run", _run_recorded)
    handler = _LogRecorder()
    loggers = [logging.getLogger(name) for name in ("agent", "modelops")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        found = [(what, line) for what, text in _recorded for line in python_in(text)]
        _recorded.clear()
        if found and request.node.get_closest_marker("python_output_ok") is None:
            shown = "\n".join(f"  {what}: {line.strip()[:300]}" for what, line in found[:10])
            pytest.fail(f"Python in user-facing output ({len(found)} line(s)):\n{shown}", pytrace=False)
