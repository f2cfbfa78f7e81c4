"""`agent audit verify FILE`: the hash chain checked, up to the anchor given (--anchor) or read
from the target's inventory in the cluster (--target)."""

from __future__ import annotations

import argparse

from agent.audit import verify
from agent.cli._common import EXIT_CHANGES, EXIT_OK, echo, write_document
from agent.cli._connect import connect
from agent.cluster import AUDIT_HASH, AUDIT_SEQ, load_inventory
from agent.errors import AgentError, plain_reason


def cmd_audit(args: argparse.Namespace) -> int:
    anchor: tuple[int, str] | None = None

    def report(ok: bool, message: str, records: int | None = None, first_bad: int | None = None) -> int:
        if args.output == "text":
            echo(("ok: " if ok else "FAILED: ") + message)
        else:
            write_document({"file": args.file, "ok": ok, "message": message, "records": records,
                            "firstBadLine": first_bad,
                            "anchor": None if anchor is None else {"seq": anchor[0], "hash": anchor[1]}}, args.output)
        return EXIT_OK if ok else EXIT_CHANGES

    if args.anchor:
        seq, _, digest = args.anchor.partition(":")
        if not seq.isdigit() or not digest:
            raise AgentError(f"--anchor {args.anchor}: expected SEQ:HASH (the record's sequence number and hash)")
        anchor = (int(seq), digest)
    elif args.kubeconfig or args.target:
        if not args.target:
            raise AgentError("--target (the RepositoryConfig name) is needed to read the anchor from the cluster")
        with connect(args) as cluster:
            inventory = load_inventory(cluster, args.target, args.inventory_namespace)
        if AUDIT_SEQ in inventory.annotations:
            seq = inventory.annotations[AUDIT_SEQ]
            if not seq.isdigit():
                raise AgentError(f"the inventory of target {args.target} holds no valid audit anchor: "
                                 f"{AUDIT_SEQ}={seq}")
            anchor = (int(seq), inventory.annotations.get(AUDIT_HASH, ""))
        elif inventory.entries:
            return report(False, f"the cluster has {len(inventory.entries)} object(s) of target {args.target!r} but "
                                 "no audit anchor: they were applied without an audit log, or the log was never "
                                 "anchored")
    try:
        verdict = verify(args.file, anchor)
    except OSError as exc:
        raise AgentError(f"cannot read the audit log {args.file}: {plain_reason(exc)}") from None
    return report(verdict.ok, verdict.message, verdict.records, verdict.first_bad)
