"""README's command list (the ```sh block under "## Commands") matches the command line.

Every command shown there is run with `--help` (in-process, `agent.cli.main`, or
`devenv.cli.main` for the local environment's `devenv ...` lines): it exists and its help exits 0. Every flag shown for it exists in that command's parser, and every value
list shown (`-o json|yaml`, `--forge github|gitlab|gitea`) is among the flag's choices. The
other way round, every flag of a command is shown in its synopsis, except the few named here
with the reason. Every other `agent ...` (and `devenv ...`) line of README's shell blocks parses,
and a `model-repo` argument lands in PATH (not in MODEL)."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from agent import cli
from devenv import cli as devenv_cli

README = Path(__file__).resolve().parents[2] / "README.md"
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
CHOICES = re.compile(r"^[a-z]+(\|[a-z]+)+$")
PROGRAMS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[[Sequence[str]], int]]] = {
    "agent": (cli.build_parser, cli.main),
    "devenv": (devenv_cli.build_parser, devenv_cli.main),  # the local environment's own command
}
# flags a synopsis need not show: said in the prose under the block (checked), or implied by another
UNSHOWN = {"-h", "--help", "-v", "--verbose", "--version"}
CLUSTER = {"--kubeconfig", "--context", "--inventory-namespace", "--connect-timeout", "--request-timeout",
           "--retry-budget"}
UNSHOWN_PER_COMMAND = {
    # `[--open-pr ...]` stands for the PR flags, which are promote's
    ("registry", "sync"): {"-n", "--namespace", "--branch-prefix", "--push", "--base", "--forge", "--api-url",
                           "--token-env", "--token-file", "--ca-file", "--dry-run"},
    # named with their variables under "The controller"
    ("run",): {"--lease-name", "--lease-namespace", "--git-token-env", "--forge-api-url", "--registry-sync-traffic",
               "--cache-dir", "--log-level"},
}


def commands_block() -> str:
    text = README.read_text()
    start = text.index("\n## Commands\n")
    return re.search(r"^```sh\n(.*?)^```$", text[start:], re.M | re.S).group(1)  # type: ignore[union-attr]


def synopses() -> list[str]:
    """The block's commands, continuation lines joined, comments dropped."""
    out: list[str] = []
    for line in commands_block().splitlines():
        code = re.split(r"\s#\s", line, maxsplit=1)[0].rstrip()
        if line.startswith((" ", "\t")) and out:
            out[-1] += " " + code.strip()
        elif code.startswith(("agent ", "devenv ")):
            out.append(code)
    return out


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands(line: str) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """The command paths a synopsis stands for (`devcluster up|down|status`: three)."""
    program, *words = line.split()
    found: list[tuple[tuple[str, ...], argparse.ArgumentParser]] = [((), PROGRAMS[program][0]())]
    for word in words:
        nxt = []
        for path, parser in found:
            subs = subparsers(parser)
            names = word.split("|")
            if subs and all(n in subs for n in names):
                nxt += [((*path, n), subs[n]) for n in names]
        if not nxt:
            break
        found = nxt
    yield from found


SYNOPSES = synopses()


def test_the_block_is_read() -> None:
    assert len(SYNOPSES) >= 20 and all(line.startswith(("agent ", "devenv ")) for line in SYNOPSES)
    assert any(line.startswith("agent run ") for line in SYNOPSES)
    assert any(line.startswith("devenv cluster ") for line in SYNOPSES)
    assert any(line.startswith("devenv demo ") for line in SYNOPSES)


@pytest.mark.parametrize("line", SYNOPSES, ids=lambda s: " ".join(s.split()[1:3]))
def test_each_command_s_help_and_flags(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    for path, parser in commands(line):
        assert path, f"not a command: {line}"
        with pytest.raises(SystemExit) as exited:
            PROGRAMS[line.split()[0]][1]([*path, "--help"])
        assert exited.value.code == 0
        help_text = capsys.readouterr().out
        known = parser._option_string_actions
        tokens = line.split()
        for i, token in enumerate(tokens):
            for flag in FLAG.findall(token.strip("[]()|")):
                if flag.startswith("--") or re.fullmatch(r"-[A-Za-z]", flag):
                    assert flag in known, f"{line.split()[0]} {' '.join(path)}: README shows {flag}, no such flag"
                    assert flag in help_text
                    value = tokens[i + 1].strip("[]()") if i + 1 < len(tokens) else ""
                    choices = known[flag].choices
                    if CHOICES.match(value) and choices is not None:
                        assert set(value.split("|")) <= set(choices), (path, flag, value, choices)


def commands_section() -> str:
    text = README.read_text()
    start = text.index("\n## Commands\n")
    return text[start:text.index("\n### ", start)]


def test_each_flag_of_a_command_is_shown() -> None:
    shown: dict[tuple[str, ...], set[str]] = {}
    parsers: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for line in SYNOPSES:
        for path, parser in commands(line):
            path = (line.split()[0], *path)  # `agent ...` and `devenv ...` commands apart
            shown.setdefault(path, set()).update(FLAG.findall(line))
            parsers[path] = parser
    section = commands_section()
    prose = {flag for flag in CLUSTER if flag in section}
    assert prose == CLUSTER, CLUSTER - prose
    for path, parser in parsers.items():
        if subparsers(parser):
            continue
        flags = {f for action in parser._actions for f in action.option_strings}
        missing = flags - shown[path] - UNSHOWN - CLUSTER - UNSHOWN_PER_COMMAND.get(path[1:], set())
        # a flag counts as shown when its other spelling is (-o / --output)
        missing = {f for f in missing
                   if not any(o in shown[path] for o in parser._option_string_actions[f].option_strings)}
        assert not missing, f"README's synopsis of {' '.join(path)} lacks {sorted(missing)}"
    controller = README.read_text().split("## The controller: `agent run`", 1)[1]
    for flag in UNSHOWN_PER_COMMAND[("run",)]:
        assert flag in controller or f"AGENT_{flag[2:].upper().replace('-', '_')}" in controller, flag


def test_each_variable_of_agent_run_is_listed() -> None:
    source = "".join(p.read_text() for p in sorted(Path(cli.__file__).parent.glob("*.py")))
    names = set(re.findall(r'\b_?env(?:_flag)?\("([A-Z_]+)"', source))
    assert "PROMETHEUS_URL" in names
    controller = README.read_text().split("## The controller: `agent run`", 1)[1]
    missing = sorted(f"AGENT_{n}" for n in names if f"`AGENT_{n}`" not in controller)
    assert not missing, missing


def example_lines() -> list[str]:
    """Every `agent ...` and `devenv ...` command of README's shell blocks outside the synopsis block."""
    text = README.read_text()
    synopsis = commands_block()
    lines = []
    for block in re.findall(r"^```(?:sh|bash|console)?\n(.*?)^```$", text, re.M | re.S):
        if block == synopsis:
            continue
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith(("agent ", "devenv ")):
                lines.append(line)
    return lines


EXAMPLES = example_lines()


@pytest.mark.parametrize("line", EXAMPLES)
def test_each_example_parses_with_model_repo_as_path(line: str) -> None:
    code = re.split(r"\s(?:#|\|\||&&|>|\||;)\s?", line, maxsplit=1)[0]
    program, *argv = shlex.split(code)
    variables = {"$KUBECONFIG": "kubeconfig", "$BASE": "main", "$PR_NUMBER": "7"}
    argv = [variables.get(w, w) for w in argv]
    args = PROGRAMS[program][0]().parse_args(argv)
    if getattr(args, "rollout_command", None) == "status":
        cli.rollout_args(args)
    if "model-repo" in argv:
        assert getattr(args, "path", None) in ("model-repo", "./model-repo", "model-repo/"), (line, vars(args))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 10
