"""Tamper-evident audit log: hash-chained JSON Lines, written through structlog.

Each record carries `seq`, `prev_hash` and `hash` = sha256 over its canonical JSON (without
`hash`). A line is written with a single write() of the whole line and fsynced before the
call returns (or, for a batch of object records, before the batch is anchored in the cluster:
a write() already survives a killed process, only a machine crash needs the fsync). A torn
last line (crash mid-write) is cut off when the log is next opened, so it never breaks
verification of the records before it.

Several processes may append to one file (two targets, a CLI apply beside the controller):
every append holds an exclusive flock, and a writer that finds the file grown since its own
last append re-reads the tail first, so the chain stays one chain.
"""

from __future__ import annotations

import fcntl
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


def _last_newline(fd: int, size: int) -> int:
    """Offset of the last newline before `size`, or -1; reads backwards in chunks."""
    chunk, end = 65536, size
    while end > 0:
        start = max(0, end - chunk)
        cut = os.pread(fd, end - start, start).rfind(b"\n")
        if cut >= 0:
            return start + cut
        end = start
    return -1


def _tail(fd: int) -> tuple[int, str, int]:
    """(seq, hash, size) of the last complete record; cuts a torn last line (a writer that
    crashed mid-write) off the file. The caller holds the flock."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        size = _last_newline(fd, size) + 1
        os.ftruncate(fd, size)
        os.fsync(fd)
    if size == 0:
        return 0, GENESIS, 0
    start = _last_newline(fd, size - 1) + 1
    last = json.loads(os.pread(fd, size - start, start))
    return int(last["seq"]), str(last["hash"]), size


class _ChainedFile:
    """structlog's final 'logger': appends one line per event (the caller holds the flock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        self.sync = True

    def msg(self, line: str) -> None:
        data = (line + "\n").encode()
        written = os.write(self.fd, data)
        if written != len(data):  # pragma: no cover - a full disk
            raise OSError(f"short write to audit log {self.path}")
        if self.sync:
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
        self._sink = _ChainedFile(self.path)
        fcntl.flock(self._sink.fd, fcntl.LOCK_EX)
        try:
            self.seq, self.last_hash, self._size = _tail(self._sink.fd)
        finally:
            fcntl.flock(self._sink.fd, fcntl.LOCK_UN)
        self._dirty = False
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

    def write(self, event: str, *, sync: bool = True, **fields: Any) -> tuple[int, str]:
        """Append one record; returns its (seq, hash). With sync=False the record is written
        (a killed process keeps it) but fsynced only by the next sync() or synced write."""
        with self._lock:
            fd = self._sink.fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size != self._size:  # another writer appended since our last record
                    self.seq, self.last_hash, self._size = _tail(fd)
                self._sink.sync = sync
                self._log.msg(event=event, **fields)
                self._size = os.fstat(fd).st_size
                self._dirty = not sync
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return self.seq, self.last_hash

    def sync(self) -> None:
        with self._lock:
            if self._dirty:
                os.fsync(self._sink.fd)
                self._dirty = False

    def close(self) -> None:
        self.sync()
        self._sink.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
