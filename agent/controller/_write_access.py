"""Whether the controller may write what the repo asks it to write to Git, checked before it
takes on the work instead of when a rollout ends.

A rollout with `onSuccess: commit` (the default) pushes to the followed branch when it succeeds;
`onSuccess: pullRequest` and `revertPullRequest: true` push a branch and open a pull request;
`--registry-sync-alias` opens pull requests too. The first commit that needs one of them has the
credentials tried once with a push that sends nothing (agent.source.Mirror.check_push): a
read-only token or deploy key is refused there, in seconds, with what to change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agent.engine import has_registry_refs
from agent.errors import AgentError
from agent.source import Mirror, PushDenied
from agent.spec import Spec

log = logging.getLogger("modelops.controller")


@dataclass(frozen=True)
class WriteNeed:
    """One reason the controller writes to Git: who (a model, or the registry sync) and how."""

    who: str
    what: str  # "pushes to the followed branch", "pushes a branch and opens a pull request"
    pull_request: bool  # needs the forge's API too (a token: an ssh key cannot open one)


def write_needs(spec: Spec, *, registry_sync: bool = False) -> list[WriteNeed]:
    """What of `spec` (and the controller's own `--registry-sync-alias`) writes to Git."""
    needs = []
    # a repo with environments: each environment's models (its overlays' rollouts), and its
    # promotion policy; without: the models as declared
    scopes = [(f" in {e.name}", e.models) for e in spec.environments] or [("", spec.models)]
    for where, models in scopes:
        for model in models:
            rollout = model.rollout
            if rollout is None:
                continue
            if rollout.on_success == "commit":
                needs.append(WriteNeed(model.key, f"onSuccess: commit{where} pushes to the followed branch", False))
            elif rollout.on_success == "pullRequest":
                needs.append(WriteNeed(model.key, f"onSuccess: pullRequest{where} pushes a branch and opens a pull "
                                                  "request", True))
            if rollout.revert_pull_request:
                needs.append(WriteNeed(model.key, f"revertPullRequest{where} pushes a branch and opens a pull request",
                                       True))
    for env in spec.environments:
        if env.promotion == "commit":
            needs.append(WriteNeed(f"the promotion policy of {env.name}", "commit pushes to the followed branch", False))
        elif env.promotion == "pullRequest":
            needs.append(WriteNeed(f"the promotion policy of {env.name}",
                                   "pullRequest pushes a branch and opens a pull request", True))
    if registry_sync:
        needs.append(WriteNeed("the registry sync", "--registry-sync-alias pushes a branch and opens a pull request",
                               True))
    return needs


def needs_text(needs: list[WriteNeed], limit: int = 3) -> str:
    """`rollout of fraud/scorer (onSuccess: commit pushes to the followed branch)`, the first few."""
    parts = [(f"the rollout of {n.who}" if "/" in n.who else n.who) + f" ({n.what})" for n in needs[:limit]]
    more = f" and {len(needs) - limit} more" if len(needs) > limit else ""
    return ", ".join(parts) + more


HOW_TO_GRANT = ("give the agent's credentials write access to the repository (a token with write access to "
                "its contents, e.g. Gitea scope write:repository or a GitHub fine-grained token with Contents: "
                "read and write; a deploy key with write access), or set onSuccess: none "
                "(deploy/README.md, \"Git access\")")


def refusal(needs: list[WriteNeed], where: str, reason: str) -> str:
    """The error when the credentials may not push: what needs it, what git said, what to do."""
    return (f"{needs_text(needs)} needs write access to {where}, but the agent's credentials may not push there "
            f"({reason}): {HOW_TO_GRANT}")


def token_refusal(needs: list[WriteNeed]) -> str | None:
    """A pull request is opened through the forge's API with the git token: an ssh key alone
    cannot. None when nothing needs one."""
    wanting = [n for n in needs if n.pull_request]
    if not wanting:
        return None
    return (f"{needs_text(wanting)} opens pull requests through the forge's API, which needs a token "
            "(--git-token-file or --git-token-env, https): an ssh key cannot open one")


class WriteAccessDenied(AgentError):
    """The repo needs the controller to write to Git and its credentials may not."""


class WriteAccess:
    """The check, once per process: after the credentials passed once, later commits that need
    writing cost nothing (a token made read-only later is caught when the outcome is written)."""

    def __init__(self, mirror: Mirror | None, *, has_token: bool, registry_sync: bool) -> None:
        self.mirror = mirror  # None: a working copy (--watch-dir); outcomes are not written back
        self.has_token = has_token
        self.registry_sync = registry_sync
        self.verified = False

    def check(self, spec: Spec) -> list[WriteNeed]:
        """What of `spec` writes to Git (checked); WriteAccessDenied when the credentials may not
        push there or cannot open a pull request; SourceError when the remote did not answer."""
        if self.mirror is None:
            return []
        needs = write_needs(spec, registry_sync=self.registry_sync and has_registry_refs(spec))
        if not needs:
            return needs
        if not self.has_token:
            no_token = token_refusal(needs)
            if no_token is not None:
                raise WriteAccessDenied(no_token)
        if self.verified:
            return needs
        where = f"branch {self.mirror.branch} of {self.mirror.url}"
        try:
            self.mirror.check_push()
        except PushDenied as exc:
            said = str(exc).removeprefix(f"git push {self.mirror.url}: ")
            raise WriteAccessDenied(refusal(needs, where, f"git push: {said}")) from None
        self.verified = True
        log.info("git: the credentials may push to %s (%s)", where, needs_text(needs))
        return needs
