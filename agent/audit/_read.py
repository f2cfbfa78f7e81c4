"""Read an audit log's records in order, as `agent history` does: a torn last line (a writer
that crashed mid-write) is left out, as the verifier leaves it out; a line that is not a JSON
object elsewhere is skipped and reported to the caller (`agent audit verify` names it)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def read_records(source: str | Path | IO[bytes], *, skipped: Callable[[int], None] | None = None
                 ) -> Iterator[dict[str, Any]]:
    """The records of the log at `source` (a path, or a binary stream such as stdin), one by one
    so a long log is never held whole. `skipped(line_number)` hears of each unreadable line."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            yield from read_records(f, skipped=skipped)
        return
    for number, raw in enumerate(source, start=1):
        if not raw.endswith(b"\n"):
            return  # torn: the crash happened while this line was written
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if isinstance(record, dict):
            yield record
        elif skipped is not None:
            skipped(number)
