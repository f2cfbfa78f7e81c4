"""What every command shares: exit codes, printing for a person, the model repo's root, the
filter, cluster and signature options, and the handler that imports a command's module only when it runs."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from agent.cli._guard import outside_repo
from agent.errors import AgentError
from agent.output import document, plain, visible
from agent.plan import Selection
from agent.source import SignerKeys

EXIT_OK = 0
EXIT_CHANGES = 1
EXIT_ERROR = 2

Handler = Callable[[argparse.Namespace], int]


def lazy(module: str, name: str) -> Handler:
    """The command `name` of agent.cli.`module`, imported when it runs: the live, rollout, audit,
    run and promotion commands load the kubernetes client, structlog or the forge clients, which
    --version, --help, validate and render never need."""

    def handler(args: argparse.Namespace) -> int:
        command: Handler = getattr(importlib.import_module(f"agent.cli.{module}"), name)
        return command(args)

    return handler


def echo(line: str) -> None:
    """A line for the terminal: names and messages from a repo or a cluster may hold control
    characters; they are shown escaped, never acted on."""
    print(visible(line))


def warn(message: str) -> None:
    print(visible(f"warning: {message}"), file=sys.stderr)


def write_document(doc: object, fmt: str) -> None:
    """-o json or -o yaml: the command's data, one shape for both (agent.output.document)."""
    sys.stdout.write(document(doc, fmt))


def dur(seconds: float) -> str:
    """Compact age: 40s, 2m5s, 1h3m."""
    total = max(0, int(seconds))
    h, rest = divmod(total, 3600)
    m, sec = divmod(rest, 60)
    return (f"{h}h{m}m" if h else f"{m}m{sec}s" if m else f"{sec}s")


CONFIG_KIND = re.compile(rb"""^kind:[ \t]*["']?RepositoryConfig["']?[ \t]*(#.*)?\r?$""", re.MULTILINE)
_CONFIG_SCAN_BYTES = 1 << 20  # a RepositoryConfig is small; a huge file is not read whole for this


def holds_repo_config(directory: Path) -> bool:
    """A cheap text check: some *.yaml / *.yml file directly in `directory` has a top-level
    `kind: RepositoryConfig` line."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return False
    for entry in entries:
        if entry.suffix not in (".yaml", ".yml") or not entry.is_file():
            continue
        try:
            with entry.open("rb") as f:
                head = f.read(_CONFIG_SCAN_BYTES)
        except OSError:
            continue
        if CONFIG_KIND.search(head):
            return True
    return False


def find_repo_root(path: str) -> Path | None:
    """The model repo PATH lies inside, found the way git finds its top level: the nearest
    ancestor of PATH holding a RepositoryConfig, stopping at the git top level (a directory
    with `.git`) or the filesystem root. None when PATH holds one itself, is not a directory,
    or no ancestor does (PATH is then the repo, with the default config)."""
    start = Path(path)
    if not start.is_dir() or holds_repo_config(start):
        return None
    here = Path(os.path.abspath(start))
    if os.path.lexists(here / ".git"):
        return None
    for candidate in here.parents:
        if holds_repo_config(candidate):
            return candidate
        if os.path.lexists(candidate / ".git"):
            break
    return None


def repo_path(args: argparse.Namespace) -> str:
    """PATH of the command, moved up to the model repo's root when PATH is a directory inside
    it (a note on stderr says so). With --revision the root is found on disk and that
    directory is read at the revision."""
    path = str(args.path)
    root = find_repo_root(path)
    if root is None:
        if not getattr(args, "revision", None) and not holds_repo_config(Path(path)):
            refused = outside_repo(path, args, CONFIG_KIND)
            if refused is not None:
                raise AgentError(refused)
        return path
    shown = str(root) if os.path.isabs(path) else os.path.relpath(root)
    print(visible(f"note: using the model repo at {shown} (the nearest directory above {path} holding a "
                  "RepositoryConfig)"), file=sys.stderr)
    return shown


_MODEL_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def rollout_args(args: argparse.Namespace) -> None:
    """`agent rollout status [MODEL] [PATH]` (and `agent history`): a lone argument that cannot
    be a model name (it has a / or a ., say `.` or `repo/`) is the PATH."""
    if args.path is None and args.model is not None and not _MODEL_NAME.fullmatch(args.model):
        args.path, args.model = args.model, None
    if args.path is None:
        args.path = "."


def selection(args: argparse.Namespace) -> Selection:
    """`-n/--namespace NS` and `--model NAME` of diff, apply and status (agent.engine.Selection)."""
    return Selection(namespace=getattr(args, "namespace", None), models=tuple(getattr(args, "model", None) or ()))


def signers(args: argparse.Namespace) -> SignerKeys | None:
    """The signers file of --verify-signatures (or AGENT_VERIFY_SIGNATURES), read and checked;
    None without one. A working tree has no signature: the flag needs --revision."""
    if not args.verify_signatures:
        return None
    if getattr(args, "revision", None) is None:
        raise AgentError("--verify-signatures (or AGENT_VERIFY_SIGNATURES) needs --revision REV: only a commit "
                         "is signed, not the files on disk (e.g. --revision HEAD)")
    return SignerKeys.load(args.verify_signatures)


__all__ = [
    "EXIT_CHANGES",
    "EXIT_ERROR",
    "EXIT_OK",
    "Handler",
    "dur",
    "echo",
    "find_repo_root",
    "holds_repo_config",
    "lazy",
    "plain",
    "repo_path",
    "rollout_args",
    "selection",
    "signers",
    "visible",
    "warn",
    "write_document",
]
