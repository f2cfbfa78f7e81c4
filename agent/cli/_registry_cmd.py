"""`agent registry sync`: a moved alias becomes a promotion PR. The flags checked, the flow run
by the library (agent.promotion.registry_sync) and each proposal told as it is planned and
published (-o text) or recorded in one document (-o json|yaml). Imported only when the command
runs: it loads git, the registry and forge clients."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from agent import output
from agent.cli._common import EXIT_OK, echo, repo_path, write_document
from agent.cli._data import proposal_document
from agent.errors import AgentError
from agent.forge import forge_options
from agent.promotion import SyncItem, SyncStep, registry_sync
from agent.source import redact_url


def _silent(line: str) -> None:
    """-o json|yaml: the steps are not told, the document says what was done."""


def cmd_registry_sync(args: argparse.Namespace) -> int:
    if args.as_ == "stable" and args.traffic is not None:
        raise AgentError("--as stable takes no --traffic (the version takes all traffic)")
    traffic = 10 if args.traffic is None else args.traffic
    if not 0 <= traffic <= 100:
        raise AgentError(f"--traffic {traffic} is outside 0-100 (percent of requests to the canary)")
    pushing = args.push is not None or args.open_pr
    forge_flags = {"--base": args.base, "--forge": args.forge, "--api-url": args.api_url,
                   "--token-env": args.token_env, "--token-file": args.token_file, "--ca-file": args.ca_file}
    extra = [flag for flag, value in forge_flags.items() if value]
    if extra and not pushing:
        raise AgentError(f"{', '.join(extra)} need --push or --open-pr")
    if args.open_pr and args.push is None:
        args.push = "origin"
    say: Callable[[str], None] = echo if args.output == "text" else _silent
    docs: list[dict[str, Any]] = []

    def progress(step: SyncStep, item: SyncItem) -> None:
        if step == "planned":
            docs.append(_say_proposal(args, item, say))
        else:
            _say_published(item, docs[-1], say)

    result = registry_sync(
        repo_path(args), args.alias, names=args.model or (), namespace=args.namespace, as_=args.as_,
        traffic=traffic, prefix=args.branch_prefix, push=args.push, base=args.base, open_pr=args.open_pr,
        dry_run=args.dry_run,
        options=forge_options(args.forge, args.api_url, args.token_env, args.token_file, args.ca_file),
        progress=progress)
    if not result.items and args.output == "text":
        print("no model pins a registry version as its stable version: nothing to follow")
    elif args.output != "text":
        write_document({"alias": args.alias, "proposals": docs}, args.output)
    return EXIT_OK


def _say_proposal(args: argparse.Namespace, item: SyncItem, say: Callable[[str], None]) -> dict[str, Any]:
    """One proposal as planned, told line by line (-o text); its document (-o json|yaml)."""
    proposal = item.proposal
    doc = proposal_document(proposal, None if proposal.plan is None else output.as_dict(proposal.plan),
                            dry_run=args.dry_run)
    name = f"{proposal.ref.kind} {proposal.ref.name}@{proposal.alias}" if proposal.ref.kind == "mlflow" else (
        f"{proposal.ref.kind} {proposal.ref.name}#{proposal.alias}")
    if proposal.up_to_date:
        say(f"{proposal.model}: up to date ({name} is {proposal.target}; {proposal.reason})")
        return doc
    say(f"{proposal.model}: {name} -> {proposal.target}, Git's stable pins {proposal.current}")
    if args.dry_run:
        if args.output == "text":
            assert proposal.plan is not None  # a proposal that is not up to date has its plan
            for line in proposal.diff.splitlines():
                echo(line.rstrip("\r"))
            print("\ncommit message:\n" + "\n".join("    " + line for line in proposal.message.splitlines()))
            print()
            sys.stdout.write(output.text(proposal.plan, show_diff=False))
        say(f"dry run: would commit on branch {proposal.branch}"
            + (f", push it to {args.push}" if item.target is None and args.push else "")
            + (" and open or update its PR" if args.open_pr else ""))
    return doc


def _say_published(item: SyncItem, doc: dict[str, Any], say: Callable[[str], None]) -> None:
    """What publishing one proposal did, told (-o text) and recorded in its document."""
    proposal, target, published = item.proposal, item.target, item.published
    assert published is not None  # told after publishing
    doc.update(commit=published.commit, pushed=published.pushed)
    if published.commit is not None:
        say(f"committed {published.commit[:12]} on branch {proposal.branch}: {proposal.message.splitlines()[0]}")
    else:
        say(f"branch {proposal.branch} has this change already: no new commit")
    if not published.pushed:
        return
    assert target is not None  # pushed: there was a remote to push to
    say(f"pushed {target.head} to {redact_url(target.url)}")
    pr = published.pull_request
    if pr is None:
        return
    doc["pullRequest"] = {"number": pr.number, "url": pr.url, "created": pr.created}
    if pr.created:
        say(f"opened PR #{pr.number} ({target.head} -> {target.base}): {pr.url}")
    elif published.commit is None:
        say(f"already proposed: PR #{pr.number} ({target.head} -> {target.base}): {pr.url}")
    else:
        say(f"updated PR #{pr.number} ({target.head} -> {target.base}): {pr.url}")
