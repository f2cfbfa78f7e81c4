"""The audit log as the UI reads it: its records (newest last) and its verification, each read
again only when the file changed (its size and modification time), so a page that polls costs
one stat. At most `keep` records are held (the newest); the verdict covers the whole file."""

from __future__ import annotations

import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.audit import Verdict, read_records, verify


@dataclass(frozen=True)
class Trail:
    records: tuple[dict[str, Any], ...]  # oldest first, the newest `keep`
    total: int  # records in the file
    verdict: Verdict | None  # None: not checked (no file)
    error: str = ""  # why the log could not be read ("" when it could)


class AuditReader:
    def __init__(self, keep: int = 20_000) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[int, int], Trail]] = {}

    def trail(self, path: Path | None) -> Trail:
        if path is None:
            return Trail((), 0, None, "no audit log is configured (--audit-log)")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return Trail((), 0, None, "the audit log has no record yet")
        except OSError as exc:
            return Trail((), 0, None, f"the audit log cannot be read: {exc.strerror or type(exc).__name__}")
        stamp = (st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            try:
                total = 0
                kept: deque[dict[str, Any]] = deque(maxlen=self.keep)
                for record in read_records(path):
                    total += 1
                    kept.append(record)
                verdict = verify(path)
            except OSError as exc:
                return Trail((), 0, None, f"the audit log cannot be read: {exc.strerror or type(exc).__name__}")
            trail = Trail(tuple(kept), total, verdict)
            self._cache[path] = (stamp, trail)
            return trail
