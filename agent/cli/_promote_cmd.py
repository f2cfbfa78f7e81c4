"""`agent promote` and `agent pr-comment`, and the forge and git auth set-up they share with
`agent registry sync`. The promote -> push -> PR flow is here in one place (`cmd_promote`,
`_promote_and_publish`, `_publish`) until agent.promotion offers it as a library function;
agent.promote is called through the module (`promotion.X`), the seam the tests substitute.
Imported only when one of these commands runs: it loads git and the forge clients."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import output
from agent import promote as promotion
from agent.cli._common import EXIT_OK, echo, repo_path, visible, write_document
from agent.cli._data import promote_document
from agent.errors import AgentError, plain_reason


def git_root(path: str) -> Path:
    return promotion.git_toplevel(Path(path))


def forge_and_auth(args: argparse.Namespace, root: Path, *,
                   open_pr: bool) -> tuple[promotion.Forge | None, promotion.GitAuth]:
    """How a push authenticates (--token-env/--token-file, --ca-file), and with `open_pr` the
    forge it opens the PR on: the token and the forge first, so that nothing is committed
    without them. The forge, when one, is the caller's to close."""
    ca_file = Path(args.ca_file) if args.ca_file else None
    options = promotion.forge_options(args.forge, args.api_url, args.token_env, args.token_file, args.ca_file)
    if open_pr:
        forge, token, kind = promotion.connect_forge(promotion.resolve_remote(root, args.push), options)
        return forge, promotion.GitAuth(token=token, username=promotion.username_for(kind), ca_file=ca_file)
    if args.token_env or args.token_file:  # a push alone: a token only when one is named
        token = promotion.read_git_token(options)
        return None, promotion.GitAuth(token=token, username=promotion.username_for(args.forge), ca_file=ca_file)
    return None, promotion.GitAuth(ca_file=ca_file)


def cmd_promote(args: argparse.Namespace) -> int:
    if args.stable or args.rollback:
        if args.canary is not None or args.traffic is not None:
            raise AgentError(f"{'--stable' if args.stable else '--rollback'} takes no --canary or --traffic")
        change = promotion.Change("stable" if args.stable else "rollback")
    elif args.traffic is None and args.canary is None:
        raise AgentError("say what to do: --canary VERSION --traffic PCT, --traffic PCT, --stable or --rollback")
    else:  # --canary V alone: the model's spec.rollout decides the traffic (refused without one)
        change = promotion.Change("canary" if args.canary is not None else "traffic", args.canary, args.traffic)
    if change.traffic is not None and not 0 <= change.traffic <= 100:
        raise AgentError(f"--traffic {change.traffic} is outside 0-100 (percent of requests to the canary)")
    if args.open_pr and args.push is None:
        args.push = "origin"
    pushing = args.push is not None
    forge_flags = {"--base": args.base, "--forge": args.forge, "--api-url": args.api_url,
                   "--token-env": args.token_env, "--token-file": args.token_file}
    extra = [flag for flag, value in forge_flags.items() if value] + (["--ca-file"] if args.ca_file else [])
    if extra and not pushing:
        raise AgentError(f"{', '.join(extra)} need --push or --open-pr")
    path = repo_path(args)
    target: promotion.PushPlan | None = None
    forge: promotion.Forge | None = None
    auth = promotion.GitAuth(ca_file=Path(args.ca_file) if args.ca_file else None)
    if pushing:
        root = git_root(path)
        forge, auth = forge_and_auth(args, root, open_pr=args.open_pr and not args.dry_run)
        try:
            target = promotion.plan_push(root, args.push, args.branch, args.base, auth)
        except BaseException:
            if forge is not None:
                forge.close()
            raise
    try:
        return _promote_and_publish(args, change, path, target, forge, auth)
    finally:
        if forge is not None:
            forge.close()


def _promote_and_publish(args: argparse.Namespace, change: promotion.Change, path: str,
                         target: promotion.PushPlan | None, forge: promotion.Forge | None,
                         auth: promotion.GitAuth) -> int:
    text = args.output == "text"
    say: Callable[[str], None] = echo if text else (lambda line: None)
    outcome = promotion.promote(path, args.model, args.namespace, change, commit=args.commit or target is not None,
                      branch=args.branch, dry_run=args.dry_run)
    if text and args.dry_run:
        for line in outcome.diff.splitlines() or ["no change to the file"]:
            echo(line.rstrip("\r"))
        print("\ncommit message:\n" + "\n".join("    " + line for line in outcome.message.splitlines()))
        print()
    if text:
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
    doc: dict[str, Any] = {}
    if not text:
        doc = promote_document(outcome, output.as_dict(outcome.plan), dry_run=args.dry_run)
    if target is not None:
        pr = _publish(args, path, target, forge, auth, outcome, doc, say)
        doc["pullRequest"] = None if pr is None else {"number": pr.number, "url": pr.url, "created": pr.created}
        if pr is not None:
            say(f"{'opened' if pr.created else 'updated'} PR #{pr.number} ({target.head} -> {target.base}): "
                f"{pr.url}")
    if not text:
        write_document(doc, args.output)
    return EXIT_OK


def _publish(args: argparse.Namespace, path: str, target: promotion.PushPlan, forge: promotion.Forge | None,
             auth: promotion.GitAuth, outcome: promotion.Outcome, doc: dict[str, Any],
             say: Callable[[str], None]) -> promotion.PullOutcome | None:
    """Push the promotion's branch and open or update its PR (in a dry run: say what would be
    done), told line by line through `say` and recorded in `doc` (-o json|yaml); the PR opened
    or updated, None without a forge or in a dry run."""
    title = outcome.message.splitlines()[0]
    doc["push"] = {"branch": target.head, "remote": promotion.shown_url(target.url), "base": target.base,
                   "pushed": False}
    if args.dry_run:
        say(f"dry run: would push {target.head} to {promotion.shown_url(target.url)}")
        if args.open_pr:
            body = promotion.pull_body(promotion.relabel(outcome.plan, target.base, target.head), outcome.message)
            doc["wouldOpen"] = {"head": target.head, "base": target.base, "title": title, "body": body}
            say(f"dry run: would open a PR {target.head} -> {target.base}")
            say(f"title: {title}")
            say("body:")
            for line in body.splitlines():
                say("    " + line)
        return None
    root = git_root(path)
    try:
        promotion.push(root, target, auth)
    except AgentError as exc:
        kept = f" (the commit stays on {target.head} here: run the same command again to push it)" if (
            outcome.commit) else ""
        raise AgentError(f"{exc}{kept}") from exc
    doc["push"]["pushed"] = True
    say(f"pushed {target.head} to {promotion.shown_url(target.url)}")
    if forge is None:
        return None
    body = promotion.pull_body(promotion.branch_plan(path, root, target, auth, outcome.plan), outcome.message)
    return promotion.open_pull(forge, target, title, body)


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
        url = promotion.repo_url(args.repo, args.forge, args.api_url)
    else:
        url = args.remote or promotion.resolve_remote(Path("."), "origin")
    options = promotion.forge_options(args.forge, args.api_url, args.token_env, args.token_file, args.ca_file)
    created, comment_url = promotion.post_comment(args.number, body, args.marker, url, options)
    print(visible(f"{'created' if created else 'updated'} comment {comment_url}"))
    return EXIT_OK
