"""`agent registry sync`: the flags. The command runs from agent.cli._registry_cmd, imported
when it runs (it loads git, the registry and forge clients)."""

from __future__ import annotations

import argparse

from agent.cli._args import add_forge, add_output, add_verbose
from agent.cli._common import lazy


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("registry", help="model registry tools: follow an alias with promotion PRs",
                       description="Model registry tools.")
    registry_sub = p.add_subparsers(dest="registry_command", required=True, metavar="{sync}")
    r = registry_sub.add_parser(
        "sync", help="propose (commit, push, PR) the version an alias names now for models that pin a version",
        description="For each Model whose stable version entry pins a registry version (MLflow version, GTO "
                    "version), ask the registry which version ALIAS (MLflow alias, GTO stage) names now. When it "
                    "differs, add a version entry pinning it (when there is none), make it the canary (or stable) "
                    "with the file edited byte for byte, validate the whole repo with every reference resolved "
                    "(promotion gates on the run's metrics), commit on branch PREFIX<namespace>-<model>-<N> from "
                    "HEAD (the work tree is untouched), push and open or update its PR. Never applies anything. "
                    "Exit 0: nothing to do, or proposed; 2: error.")
    r.add_argument("path", nargs="?", default=".", help="model repo directory (default: .)")
    r.add_argument("--alias", required=True, metavar="NAME", help="the alias (MLflow) or stage (GTO) to follow")
    r.add_argument("--model", action="append", metavar="NAME", help="only the model(s) NAME (repeatable)")
    r.add_argument("-n", "--namespace", metavar="NS", help="only the models of namespace NS")
    r.add_argument("--as", dest="as_", choices=["canary", "stable"], default="canary",
                   help="what the new version becomes: canary (default, at --traffic) or stable")
    r.add_argument("--traffic", type=int, metavar="PCT", help="the canary's percent of requests (default 10)")
    r.add_argument("--branch-prefix", default="registry/", metavar="PREFIX",
                   help="the branch is PREFIX<namespace>-<model>-<version> (default registry/)")
    r.add_argument("--push", nargs="?", const="origin", metavar="REMOTE",
                   help="git push the branch to REMOTE (default origin)")
    r.add_argument("--open-pr", action="store_true",
                   help="after the push, open the pull/merge request, or update the open one (implies --push)")
    r.add_argument("--base", metavar="BRANCH",
                   help="the PR's base branch (default: the remote's default branch, else main)")
    add_forge(r)
    r.add_argument("--dry-run", action="store_true",
                   help="print the diff, the commit message and the plan; write, commit, push and open nothing")
    add_output(r, "text (default): a line per model and what was done; json or yaml: {alias, proposals}, one "
                  "proposal per model {model, registry, alias, registryVersion, gitVersion, upToDate, branch, "
                  "diff, plan, commit, pushed, pullRequest}")
    add_verbose(r)
    r.set_defaults(handler=lazy("_registry_cmd", "cmd_registry_sync"))
