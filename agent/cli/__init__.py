"""Command line: parse flags, call one function per command, map results to exit codes.

Exit codes (like `kubectl diff`): 0 success / no change, 1 changes found (diff) or a check
failed (audit verify), 2 error (bad input, cluster unreachable, ...).

One thin module per command group, each contributing its own subparsers: offline (validate,
render, diff --base), live (diff, apply, status, history), rollout, audit, run, promote and
pr-comment, registry, and version/completion. A group whose command loads a heavy library (the
kubernetes client, structlog, the forge clients) keeps its flags in `_<group>.py` and its
commands in `_<group>_cmd.py`, imported only when one of them runs.
"""

from agent.cli._common import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, find_repo_root, rollout_args
from agent.cli._completion import command_tree, options
from agent.cli._main import build_parser, completion_script, main, run_guarded
from agent.cli._rollout import who
from agent.cli._version import agent_version, tested_with

__all__ = [
    "EXIT_CHANGES", "EXIT_ERROR", "EXIT_OK", "agent_version", "build_parser", "command_tree", "completion_script",
    "find_repo_root", "main", "options", "rollout_args", "run_guarded", "tested_with", "who",
]
