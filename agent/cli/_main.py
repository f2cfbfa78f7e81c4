"""The `agent` command: the parser assembled from each command group's flags, and `main`, which
runs the chosen command and maps what it raises to an exit code."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from agent.cli import _audit, _envs, _live, _offline, _promote, _registry, _rollout, _run, _version
from agent.cli._common import EXIT_ERROR, EXIT_OK, Handler, visible
from agent.cli._completion import script
from agent.cli._guard import error_lines
from agent.errors import AgentError, ValidationFailed
from agent.source import use_age_key_file

DESCRIPTION = "Command line: parse flags, call one function per command, map results to exit codes."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent", description=DESCRIPTION)
    parser.add_argument("--version", action=_version.VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    _offline.add_parsers(sub)  # validate, render, diff
    _live.add_parsers(sub)  # apply, status
    _envs.add_parsers(sub)  # environments
    _rollout.add_parsers(sub)
    _live.add_history_parser(sub)
    _audit.add_parsers(sub)
    _run.add_parsers(sub)
    _promote.add_parsers(sub)
    _registry.add_parsers(sub)
    _promote.add_pr_comment_parser(sub)

    p = sub.add_parser("completion", help="print a shell completion script: bash, zsh or fish",
                       description="Print a completion script. bash: `source <(agent completion bash)`; zsh: "
                                   "`source <(agent completion zsh)`; fish: `agent completion fish | source`.")
    p.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete in")
    p.set_defaults(handler=_cmd_completion)

    _version.add_parsers(sub)
    return parser


def completion_script(shell: str) -> str:
    """A completion script generated from the argparse parser: subcommands, flags, and the
    values of flags with choices (bash; zsh through bashcompinit; fish natively)."""
    return script(build_parser(), shell)


def _cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(completion_script(args.shell))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes (like `kubectl diff`): 0 success / no change, 1 changes found (diff) or a check
    failed (audit verify), 2 error (bad input, cluster unreachable, ...)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    if hasattr(args, "sops_age_key_file"):  # this process's age identities for SOPS files (None: as sops finds them)
        use_age_key_file(args.sops_age_key_file)
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_guarded(handler, args)


def run_guarded(handler: Handler, args: argparse.Namespace) -> int:
    """Run one command: its exit code, or 2 with the error in words on stderr (a problem list
    for an invalid repo; a traceback only for a bug). Exit codes 1 mean something to scripts
    ("changes", "not ready"): a crash must never look like one."""
    try:
        return handler(args)
    except ValidationFailed as exc:
        where = f" at {exc.revision}" if exc.revision else ""
        print(f"error: {len(exc.errors)} problem(s) in the model repo{where}:", file=sys.stderr)
        for line in error_lines(exc.errors):
            print(visible(line), file=sys.stderr)
        return EXIT_ERROR
    except AgentError as exc:
        print(visible(f"error: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    except Exception:
        traceback.print_exc()
        print("error: internal error (a bug: please report it with the traceback above)", file=sys.stderr)
        return EXIT_ERROR
