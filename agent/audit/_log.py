"""Tamper-evident audit log: hash-chained JSON Lines, written through structlog.

Each record carries `seq`, `prev_hash` and `hash` = sha256 over its canonical JSON (without
`hash`). A line is written with a single write() of the whole line and fsynced before the
call returns. A torn last line (crash mid-write) is cut off when the log is next opened, so
it never breaks verification of the records before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def _tail(path: Path) -> tuple[int, str]:
    """(seq, hash) of the last complete record; cuts a torn last line off the file."""
    if not path.exists() or path.stat().st_size == 0:
        return 0, GENESIS
    with path.open("rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
            data = data[:cut]
    lines = data.splitlines()
    if not lines:
        return 0, GENESIS
    last = json.loads(lines[-1])
    return int(last["seq"]), str(last["hash"])


class _ChainedFile:
    """structlog's final 'logger': appends one fsynced line per event."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def msg(self, line: str) -> None:
        data = (line + "\n").encode()
        written = os.write(self.fd, data)
        if written != len(data):  # pragma: no cover - a full disk
            raise OSError(f"short write to audit log {self.path}")
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class AuditLog:
    """Append-only, hash-chained audit sink. Thread-safe; one instance per file."""

    def __init__(self, path: str | Path, identity: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.identity = identity
        self._lock = threading.Lock()
        self.seq, self.last_hash = _tail(self.path)
        self._sink = _ChainedFile(self.path)
        self._log = structlog.wrap_logger(
            self._sink,
            wrapper_class=structlog.BoundLogger,
            processors=[self._chain, structlog.processors.JSONRenderer(serializer=self._dumps)],
        )

    @staticmethod
    def _dumps(record: Any, **_: Any) -> str:
        return canonical(record).decode()

    def _chain(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
        record = {
            **event,
            "seq": self.seq + 1,
            "time": datetime.now(UTC).isoformat(timespec="microseconds"),
            "agent": self.identity,
            "prev_hash": self.last_hash,
        }
        record["hash"] = record_hash(record)
        self.seq, self.last_hash = record["seq"], record["hash"]
        return record

    def write(self, event: str, **fields: Any) -> tuple[int, str]:
        with self._lock:
            self._log.msg(event=event, **fields)
            return self.seq, self.last_hash

    def close(self) -> None:
        self._sink.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
