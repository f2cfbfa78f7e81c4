"""`agent promote` and `agent pr-comment`: the flags. The commands run from
agent.cli._promote_cmd, imported when one runs (it loads git and the forge clients)."""

from __future__ import annotations

import argparse

from agent.cli._args import add_forge, add_output, add_verbose
from agent.cli._common import lazy


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`promote`."""
    p = sub.add_parser("promote", help="edit a model's canary/stable in the repo (validated first; optionally committed)",
                       description="Edit a Model's canary and stable version in the model repo's files, keeping "
                                   "everything else of the file byte for byte. The whole repo, edit included, is "
                                   "validated (promotion gates too) before anything is written; then the model-level "
                                   "plan of the change is printed.")
    p.add_argument("model", help="the Model's metadata.name")
    p.add_argument("path", nargs="?", default=".", help="model repo directory (default: .)")
    p.add_argument("-n", "--namespace", metavar="NS", help="the Model's namespace (needed when the name is in several)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--canary", metavar="VERSION",
                      help="start or change the canary: this version, with --traffic PCT (alone when the model's "
                           "spec.rollout decides the traffic)")
    what.add_argument("--stable", action="store_true", help="make the canary version the stable version; the canary is removed")
    what.add_argument("--rollback", action="store_true", help="drop the canary (the stable version takes all traffic)")
    what.add_argument("--to", metavar="ENV",
                      help="promote to environment ENV the version its spec.promotesFrom environment serves, only "
                           "when it has served there for ENV's soak with its analysis healthy over that window "
                           "(queried in that environment's Prometheus); refused with the figures otherwise (exit 2)")
    p.add_argument("--prometheus-url", metavar="URL",
                   help="with --to: the Prometheus of the environment promoted from, when its spec.prometheus "
                        "names none")
    p.add_argument("--traffic", type=int, metavar="PCT",
                   help="percent of requests to the canary, 0-100 (alone: move an existing canary's split, "
                        "written in when the canary has none)")
    p.add_argument("--commit", action="store_true",
                   help="git commit the file with a structured message (Model, From-Version, To-Version, Traffic trailers)")
    p.add_argument("--branch", metavar="NAME",
                   help="create or switch to branch NAME, then commit there (implies --commit; refused when the "
                        "work tree has uncommitted changes)")
    p.add_argument("--push", nargs="?", const="origin", metavar="REMOTE",
                   help="after the commit, git push the branch to REMOTE (default origin; implies --commit; the "
                        "branch is --branch NAME or the current one, never the PR's base)")
    p.add_argument("--open-pr", action="store_true",
                   help="after the push, open the pull/merge request BRANCH -> BASE, or update the open one "
                        "(implies --push)")
    p.add_argument("--base", metavar="BRANCH",
                   help="the PR's base branch (default: the remote's default branch, else main)")
    add_forge(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print the file's unified diff, the commit message and the PR it would open; write "
                        "nothing, commit, push and call no API")
    add_output(p, "text (default): the diff (--dry-run), the plan and what was done; json or yaml: {model, file, "
                  "changed, dryRun, diff, message, commit, branch, plan, push, pullRequest}; with --to also "
                  "evidence {model, version, from, to, soakSeconds, servedSeconds, metrics, holds, reasons}")
    add_verbose(p)
    p.set_defaults(handler=lazy("_promote_cmd", "cmd_promote"))


def add_pr_comment_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`pr-comment` (listed after `registry`)."""
    p = sub.add_parser("pr-comment", help="keep one comment (the plan) on a pull/merge request, edited in place",
                       description="Post BODY-FILE as the comment with the marker on pull/merge request NUMBER, "
                                   "or edit that comment when it is there already (one comment per marker). A "
                                   "body over 60,000 characters is cut, with a note.")
    p.add_argument("number", type=int, help="the pull/merge request number (GitLab: the merge request IID)")
    p.add_argument("--body-file", required=True, metavar="FILE", help="the comment's Markdown; - reads stdin")
    p.add_argument("--marker", default="plan", help="which comment to keep: one per marker (default plan)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--remote", metavar="URL", help="the repository's git URL (default: the URL of origin)")
    where.add_argument("--repo", metavar="OWNER/NAME",
                       help="the repository on the forge (with --forge github|gitlab, or --api-url)")
    add_forge(p)
    add_verbose(p)
    p.set_defaults(handler=lazy("_promote_cmd", "cmd_pr_comment"))
