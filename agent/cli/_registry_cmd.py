"""`agent registry sync`: a moved alias becomes a promotion PR. The flow (plan the proposals,
then commit, push and open a PR for each) is here in one place (`cmd_registry_sync`,
`_publish_one`) until agent.promotion offers it as a library function. Imported only when the
command runs: it loads git, the registry and forge clients."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import output
from agent import promote as promotion
from agent.cli._common import EXIT_OK, echo, repo_path, write_document
from agent.cli._data import proposal_document
from agent.cli._promote_cmd import forge_and_auth, git_root
from agent.errors import AgentError
from agent.registry_sync import Proposal, plan_sync, publish


def cmd_registry_sync(args: argparse.Namespace) -> int:
    if args.as_ == "stable" and args.traffic is not None:
        raise AgentError("--as stable takes no --traffic (the version takes all traffic)")
    traffic = 10 if args.traffic is None else args.traffic
    if not 0 <= traffic <= 100:
        raise AgentError(f"--traffic {traffic} is outside 0-100 (percent of requests to the canary)")
    if args.open_pr and args.push is None:
        args.push = "origin"
    pushing = args.push is not None
    forge_flags = {"--base": args.base, "--forge": args.forge, "--api-url": args.api_url,
                   "--token-env": args.token_env, "--token-file": args.token_file, "--ca-file": args.ca_file}
    extra = [flag for flag, value in forge_flags.items() if value]
    if extra and not pushing:
        raise AgentError(f"{', '.join(extra)} need --push or --open-pr")
    path = repo_path(args)
    root = git_root(path)
    forge: promotion.Forge | None = None
    auth = promotion.GitAuth(ca_file=Path(args.ca_file) if args.ca_file else None)
    try:
        if pushing and not args.dry_run:
            forge, auth = forge_and_auth(args, root, open_pr=args.open_pr)
        head = _head(root)
        proposals = plan_sync(path, args.alias, names=args.model or (), namespace=args.namespace, as_=args.as_,
                              traffic=traffic, prefix=args.branch_prefix, revision=head)
        if not proposals:
            if args.output == "text":
                print("no model pins a registry version as its stable version: nothing to follow")
            else:
                write_document({"alias": args.alias, "proposals": []}, args.output)
            return EXIT_OK
        targets = {p.model: promotion.plan_push(root, args.push, p.branch, args.base, auth)
                   for p in proposals if pushing and not p.up_to_date}
        docs = [_publish_one(args, proposal, path, root, head, targets.get(proposal.model), forge, auth)
                for proposal in proposals]
        if args.output != "text":
            write_document({"alias": args.alias, "proposals": docs}, args.output)
        return EXIT_OK
    finally:
        if forge is not None:
            forge.close()


def _head(root: Path) -> str:
    try:
        return promotion.git_head(root)
    except promotion.PromoteError as exc:
        raise AgentError(f"{exc}: registry sync commits on top of HEAD") from exc


def _publish_one(args: argparse.Namespace, proposal: Proposal, path: str, root: Path, head: str,
                 target: promotion.PushPlan | None, forge: promotion.Forge | None,
                 auth: promotion.GitAuth) -> dict[str, Any]:
    """Publish one proposal, told line by line (-o text); its document (-o json|yaml)."""
    text = args.output == "text"
    say: Callable[[str], None] = echo if text else (lambda line: None)
    doc = proposal_document(proposal, None if proposal.plan is None else output.as_dict(proposal.plan),
                            dry_run=args.dry_run)
    name = f"{proposal.ref.kind} {proposal.ref.name}@{proposal.alias}" if proposal.ref.kind == "mlflow" else (
        f"{proposal.ref.kind} {proposal.ref.name}#{proposal.alias}")
    if proposal.up_to_date:
        say(f"{proposal.model}: up to date ({name} is {proposal.target}; {proposal.reason})")
        return doc
    say(f"{proposal.model}: {name} -> {proposal.target}, Git's stable pins {proposal.current}")
    title = proposal.message.splitlines()[0]
    if args.dry_run:
        if text:
            for line in proposal.diff.splitlines():
                echo(line.rstrip("\r"))
            print("\ncommit message:\n" + "\n".join("    " + line for line in proposal.message.splitlines()))
            print()
            sys.stdout.write(output.text(proposal.plan, show_diff=False))
        say(f"dry run: would commit on branch {proposal.branch}"
            + (f", push it to {args.push}" if target is None and args.push else "")
            + (" and open or update its PR" if args.open_pr else ""))
        return doc
    published = publish(path, root, proposal, head, target, forge, auth)
    doc.update(commit=published.commit, pushed=published.pushed)
    if published.commit is not None:
        say(f"committed {published.commit[:12]} on branch {proposal.branch}: {title}")
    else:
        say(f"branch {proposal.branch} has this change already: no new commit")
    if not published.pushed:
        return doc
    assert target is not None  # pushed: there was a remote to push to
    say(f"pushed {target.head} to {promotion.shown_url(target.url)}")
    pr = published.pull_request
    if pr is None:
        return doc
    doc["pullRequest"] = {"number": pr.number, "url": pr.url, "created": pr.created}
    if pr.created:
        say(f"opened PR #{pr.number} ({target.head} -> {target.base}): {pr.url}")
    elif published.commit is None:
        say(f"already proposed: PR #{pr.number} ({target.head} -> {target.base}): {pr.url}")
    else:
        say(f"updated PR #{pr.number} ({target.head} -> {target.base}): {pr.url}")
    return doc
