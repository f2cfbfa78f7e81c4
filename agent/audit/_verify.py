"""Verify an audit log: every hash, every link, the sequence, and (with an anchor from the
cluster) that the tail was not cut."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from agent.audit._log import GENESIS, record_hash


@dataclass
class Verdict:
    ok: bool
    records: int
    message: str
    first_bad: int | None = None  # 1-based line number


def verify(path: str | Path, anchor: tuple[int, str] | None = None) -> Verdict:
    """Check the chain; `anchor` (seq, hash) is the last record the cluster saw committed."""
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    if not torn:
        lines = lines[:-1]
    prev, seq = GENESIS, 0
    hashes: dict[int, str] = {}
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines)
        try:
            record = json.loads(raw)
        except ValueError:
            if last and torn:
                return Verdict(True, seq, f"{seq} records intact; torn final line ignored (crash during a write)")
            return Verdict(False, seq, f"line {number}: not a JSON record", number)
        if not isinstance(record, dict):
            return Verdict(False, seq, f"line {number}: not a JSON object", number)
        if record.get("hash") != record_hash(record):
            return Verdict(False, seq, f"line {number} (seq {record.get('seq')}): hash mismatch, the record was edited", number)
        if record.get("prev_hash") != prev:
            return Verdict(False, seq, f"line {number} (seq {record.get('seq')}): prev_hash does not match the record before it (a record was removed or reordered)", number)
        if record.get("seq") != seq + 1:
            return Verdict(False, seq, f"line {number}: seq {record.get('seq')} where {seq + 1} was expected", number)
        prev, seq = record["hash"], record["seq"]
        hashes[seq] = prev
    if anchor is not None:
        a_seq, a_hash = anchor
        if a_seq > seq:
            return Verdict(False, seq, f"log ends at seq {seq} but the cluster recorded seq {a_seq}: the tail was cut", seq + 1)
        if a_seq and hashes.get(a_seq) != a_hash:
            return Verdict(False, seq, f"record seq {a_seq} does not match the hash the cluster recorded", a_seq)
    return Verdict(True, seq, f"{seq} records intact" + (f", anchored at seq {anchor[0]}" if anchor else ""))
