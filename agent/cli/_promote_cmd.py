"""`agent promote` and `agent pr-comment`: the flags checked, the flow run by the library
(agent.promotion.promote_and_publish, post_comment) and told as it goes (-o text) or as one
document (-o json|yaml). Imported only when one of these commands runs: it loads git and the
forge clients."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import output
from agent.cli._common import EXIT_ERROR, EXIT_OK, echo, repo_path, visible, write_document
from agent.cli._data import promote_document
from agent.errors import AgentError, plain_reason
from agent.forge import forge_options, repo_url
from agent.promotion import (
    Change,
    PromotionResult,
    PromotionStep,
    post_comment,
    promote_and_publish,
    promote_to_environment,
)
from agent.source import redact_url, resolve_remote


def _silent(line: str) -> None:
    """-o json|yaml: the steps are not told, the document says what was done."""


def cmd_promote(args: argparse.Namespace) -> int:
    if args.to is not None:
        return cmd_promote_to(args)
    if args.prometheus_url:
        raise AgentError("--prometheus-url goes with --to ENV")
    if args.stable or args.rollback:
        if args.canary is not None or args.traffic is not None:
            raise AgentError(f"{'--stable' if args.stable else '--rollback'} takes no --canary or --traffic")
        change = Change("stable" if args.stable else "rollback")
    elif args.traffic is None and args.canary is None:
        raise AgentError("say what to do: --canary VERSION --traffic PCT, --traffic PCT, --stable or --rollback")
    else:  # --canary V alone: the model's spec.rollout decides the traffic (refused without one)
        change = Change("canary" if args.canary is not None else "traffic", args.canary, args.traffic)
    if change.traffic is not None and not 0 <= change.traffic <= 100:
        raise AgentError(f"--traffic {change.traffic} is outside 0-100 (percent of requests to the canary)")
    _check_forge_flags(args)
    text = args.output == "text"
    say: Callable[[str], None] = echo if text else _silent

    def progress(step: PromotionStep, result: PromotionResult) -> None:
        if step == "edited":
            if text:
                _say_edit(args, result, say)
        elif result.target is not None:
            say(f"pushed {result.target.head} to {redact_url(result.target.url)}")

    result = promote_and_publish(
        repo_path(args), args.model, args.namespace, change, commit=args.commit, branch=args.branch,
        dry_run=args.dry_run, push=args.push, base=args.base, open_pr=args.open_pr,
        options=forge_options(args.forge, args.api_url, args.token_env, args.token_file, args.ca_file),
        progress=progress)
    doc = _published(args, result, say, text)
    if not text:
        write_document(doc, args.output)
    return EXIT_OK


def cmd_promote_to(args: argparse.Namespace) -> int:
    """`agent promote MODEL --to ENV`: the evidence told, then the overlay edit (or exit 2)."""
    if args.traffic is not None:
        raise AgentError("--to ENV takes no --traffic: the version the environment promotes from serves becomes stable")
    text = args.output == "text"
    say: Callable[[str], None] = echo if text else _silent
    _check_forge_flags(args)

    def progress(step: PromotionStep, result: PromotionResult) -> None:
        if step == "edited" and text:
            _say_edit(args, result, say)
        elif step == "pushed" and result.target is not None:
            say(f"pushed {result.target.head} to {redact_url(result.target.url)}")

    done = promote_to_environment(
        repo_path(args), args.model, args.namespace, args.to, prometheus_url=args.prometheus_url,
        commit=args.commit, branch=args.branch, dry_run=args.dry_run, push=args.push, base=args.base,
        open_pr=args.open_pr, options=forge_options(args.forge, args.api_url, args.token_env, args.token_file,
                                                   args.ca_file), progress=progress)
    evidence = done.evidence
    plan = evidence.plan
    if text:
        verdict = "holds" if evidence.holds else "REFUSED"
        echo(f"promotion of {plan.key} {plan.version} from {plan.source} to {plan.target}: evidence {verdict} "
             f"(Prometheus {evidence.prometheus})")
        for line in evidence.lines():
            echo("  " + line)
        for reason in evidence.reasons:
            echo(f"refused: {reason}")
    doc: dict[str, Any] = {"evidence": evidence.as_dict()}
    if done.result is not None:
        doc.update(_published(args, done.result, say, text))
    if not text:
        write_document(doc, args.output)
    return EXIT_OK if evidence.holds else EXIT_ERROR


def _check_forge_flags(args: argparse.Namespace) -> None:
    pushing = args.push is not None or args.open_pr
    forge_flags = {"--base": args.base, "--forge": args.forge, "--api-url": args.api_url,
                   "--token-env": args.token_env, "--token-file": args.token_file}
    extra = [flag for flag, value in forge_flags.items() if value] + (["--ca-file"] if args.ca_file else [])
    if extra and not pushing:
        raise AgentError(f"{', '.join(extra)} need --push or --open-pr")
    if args.open_pr and args.push is None:
        args.push = "origin"


def _published(args: argparse.Namespace, result: PromotionResult, say: Callable[[str], None],
               text: bool) -> dict[str, Any]:
    """The document of what promote_and_publish did, the push and the PR told as text."""
    doc: dict[str, Any] = {}
    if not text:
        doc = promote_document(result.outcome, output.as_dict(result.outcome.plan), dry_run=args.dry_run)
    target, pr = result.target, result.pull_request
    if target is not None:
        doc["push"] = {"branch": target.head, "remote": redact_url(target.url), "base": target.base,
                       "pushed": result.pushed}
        if args.dry_run:
            say(f"dry run: would push {target.head} to {redact_url(target.url)}")
            if result.would_open is not None:
                title, body = result.would_open
                doc["wouldOpen"] = {"head": target.head, "base": target.base, "title": title, "body": body}
                say(f"dry run: would open a PR {target.head} -> {target.base}")
                say(f"title: {title}")
                say("body:")
                for line in body.splitlines():
                    say("    " + line)
        doc["pullRequest"] = None if pr is None else {"number": pr.number, "url": pr.url, "created": pr.created}
        if pr is not None:
            say(f"{'opened' if pr.created else 'updated'} PR #{pr.number} ({target.head} -> {target.base}): "
                f"{pr.url}")
    return doc


def _say_edit(args: argparse.Namespace, result: PromotionResult, say: Callable[[str], None]) -> None:
    """The edit, told as soon as it is made (before any push): -o text."""
    outcome = result.outcome
    if args.dry_run:
        for line in outcome.diff.splitlines() or ["no change to the file"]:
            echo(line.rstrip("\r"))
        print("\ncommit message:\n" + "\n".join("    " + line for line in outcome.message.splitlines()))
        print()
    sys.stdout.write(output.text(outcome.plan, show_diff=False))
    if outcome.after == outcome.before:
        say(f"no change: {outcome.model} is already so; nothing written")
    elif args.dry_run:
        say("dry run: nothing written")
    elif outcome.commit:
        where = f" on branch {outcome.branch}" if outcome.branch else ""
        say(f"committed {outcome.commit[:12]}{where}: {outcome.message.splitlines()[0]}")
    else:
        say(f"wrote {outcome.file}")


def cmd_pr_comment(args: argparse.Namespace) -> int:
    if args.remote and args.repo:
        raise AgentError("give --remote URL or --repo OWNER/NAME, not both")
    if args.body_file == "-":
        body = sys.stdin.read()
    else:
        try:
            body = Path(args.body_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = plain_reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
            raise AgentError(f"cannot read --body-file {args.body_file}: {reason}") from None
    if not body.strip():
        raise AgentError(f"--body-file {args.body_file} is empty: nothing to post")
    if args.repo:
        url = repo_url(args.repo, args.forge, args.api_url)
    else:
        url = args.remote or resolve_remote(Path("."), "origin")
    options = forge_options(args.forge, args.api_url, args.token_env, args.token_file, args.ca_file)
    created, comment_url = post_comment(args.number, body, args.marker, url, options)
    print(visible(f"{'created' if created else 'updated'} comment {comment_url}"))
    return EXIT_OK
