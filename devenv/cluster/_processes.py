"""Detached control-plane processes, identified by pid *and* kernel start time.

A pid alone is not an identity: after a crash or reboot it may belong to someone else. We
record the start time from /proc/<pid>/stat and the executable, and only ever signal a pid
whose both still match.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv.cluster._errors import DevclusterError

# Popen objects of processes started by this Python process: polling them reaps zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# Exit codes of children reaped by running(), for exit_status().
_EXITED: dict[int, int] = {}
_PORT_LOW, _PORT_HIGH = 20000, 32000


@dataclass(frozen=True)
class Proc:
    """One started process: enough to find it again, and to never mistake another for it."""

    name: str
    pid: int
    start_ticks: int
    exe: str
    log: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "exe": self.exe,
            "log": self.log,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Proc:
        return cls(
            name=str(raw["name"]),
            pid=int(raw["pid"]),
            start_ticks=int(raw["start_ticks"]),
            exe=str(raw["exe"]),
            log=str(raw["log"]),
        )


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a pid, or None if there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _argv0(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def spawn(name: str, argv: Sequence[str], log: Path, cwd: Path) -> Proc:
    """Start argv in its own session (it outlives the caller), output appended to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[popen.pid] = popen
    _EXITED.pop(popen.pid, None)
    stat = _stat(popen.pid)
    if stat is None:
        raise DevclusterError(f"{name} exited immediately; see {log}")
    deadline = time.monotonic() + 2.0
    while not _argv0(popen.pid) and popen.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)  # the exec is still setting up its arguments (see running())
    return Proc(name=name, pid=popen.pid, start_ticks=stat[1], exe=argv[0], log=str(log))


def running(proc: Proc) -> bool:
    """True if proc's pid is still that very process (same start time and executable).

    /proc decides, not Popen.poll(): poll() reports a child as exited (status 0) when waitpid
    fails with ECHILD, which says nothing about the process itself. poll() only reaps a zombie.
    """
    stat = _stat(proc.pid)
    # An empty cmdline with our start time is our child between execve's switch of memory and
    # the new program's arguments being set up: the kernel wakes a vfork parent (Popen) inside
    # that window, so a check right after spawn can see it (it failed a CI run on etcd).
    alive = (stat is not None and stat[0] not in ("Z", "X") and stat[1] == proc.start_ticks
             and _argv0(proc.pid) in (proc.exe, ""))
    if not alive:
        child = _CHILDREN.get(proc.pid)
        if child is not None and child.poll() is not None:
            _EXITED[proc.pid] = child.returncode
            del _CHILDREN[proc.pid]
    return alive


def state_letter(proc: Proc) -> str:
    """The kernel's state of proc ("S" sleeping, "T" stopped by a signal, ...), "" if it is gone."""
    stat = _stat(proc.pid)
    return stat[0] if stat is not None and running(proc) else ""


def exit_status(proc: Proc) -> str:
    """How a stopped child of ours ended ("exit status 1", "killed by SIGKILL"), or ""."""
    code = _EXITED.get(proc.pid)
    if code is None:
        child = _CHILDREN.get(proc.pid)
        code = child.poll() if child is not None else None
    if code is None:
        return ""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


def _stop_one(proc: Proc, timeout: float) -> bool:
    """SIGTERM, wait, SIGKILL; True if it needed the SIGKILL."""
    if not running(proc):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGCONT)  # a process stopped by SIGSTOP handles its SIGTERM only then
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(proc):
            return False
        time.sleep(0.05)
    if running(proc):  # checked again right before the signal: never kill a reused pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while running(proc):
        if time.monotonic() > deadline:
            raise DevclusterError(f"{proc.name} (pid {proc.pid}) survived SIGKILL")
        time.sleep(0.05)
    return True


def stop(procs: Sequence[Proc], timeout: float = 15.0) -> list[str]:
    """Stop processes that are still ours, last started first; names of those SIGKILLed.

    The order matters: an apiserver whose etcd is already gone hangs in its shutdown.
    """
    return [p.name for p in reversed(procs) if _stop_one(p, timeout)]


def free_ports(count: int) -> list[int]:
    """Distinct loopback TCP ports that are free now, below the kernel's ephemeral range.

    Ports from the ephemeral range (what binding to port 0 returns) get reused for outgoing
    connections, e.g. the apiserver's own connections to etcd, so we pick outside it.
    """
    rng = random.SystemRandom()
    ports: list[int] = []
    for _ in range(count * 50):
        if len(ports) == count:
            return ports
        port = rng.randrange(_PORT_LOW, _PORT_HIGH)
        if port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    raise DevclusterError(f"found no {count} free ports in {_PORT_LOW}-{_PORT_HIGH}")


def ports_free(ports: Sequence[int]) -> bool:
    """Can every one of these loopback ports be listened on again now?

    SO_REUSEADDR as Go's listeners set it: connections of a stopped server still in TIME_WAIT
    do not keep its port from being reused.
    """
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def log_tail(proc: Proc, lines: int = 20) -> str:
    try:
        text = Path(proc.log).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
