"""The one way the agent runs git: a child with a timeout, its own process group (killed whole
on timeout: git-remote-https, ssh, upload-pack) and reaped, so no git process outlives a call;
any secret masked in its stderr."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent._http import Secret, scrub, secret_forms

__all__ = ["GitFailed", "run_git"]


class GitFailed(Exception):
    """A git child failed (or timed out); stderr with any secret masked."""

    def __init__(self, stderr: str, timed_out: bool = False) -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.timed_out = timed_out


def run_git(args: Sequence[str], *, env: Mapping[str, str], timeout: float, cwd: str | Path | None = None,
            secrets: Sequence[Secret] = (), stderr_sink: list[str] | None = None) -> str:
    """Run one git (or any) child with a timeout and return its stdout; never leaves it behind.

    The child leads its own process group, so on timeout the whole group (git and its
    transport helpers) is killed, then reaped. Raises GitFailed with stderr, the secrets masked
    in every encoding a remote could echo them in (agent._http.secret_forms: a `(user, token)`
    pair covers the Basic auth header git sends). `stderr_sink`: where stderr (masked) is
    appended, on success too (`git verify-commit --raw` writes its verdict there)."""
    proc = subprocess.Popen(  # an argv list, no shell
        list(args), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    timed_out = False
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, err = _drain(proc)
    except BaseException:  # KeyboardInterrupt, SystemExit: still no orphan, no zombie
        _kill_group(proc)
        _drain(proc)
        raise
    stderr = scrub(err.decode("utf-8", "replace"), secret_forms(secrets))
    if stderr_sink is not None:
        stderr_sink.append(stderr)
    if timed_out:
        raise GitFailed(stderr, timed_out=True)
    if proc.returncode != 0:
        raise GitFailed(stderr)
    return out.decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group id is the child's pid (start_new_session)


def _drain(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Read what a killed child wrote and reap it; a descendant that left the process group
    and still holds the pipes is not waited for."""
    try:
        return proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
        return b"", b""
