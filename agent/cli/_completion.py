"""Shell completion scripts (bash; zsh through bashcompinit; fish natively), generated from the
argparse parser: subcommands, flags, and the values of flags with choices."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Iterator

CommandTree = list[tuple[tuple[str, ...], argparse.ArgumentParser, dict[str, str]]]


def command_tree(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser, dict[str, str]]]:
    """(command path, its parser, its subcommands with their help), depth first."""
    subs: dict[str, str] = {}
    children: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, child in action.choices.items():
                subs[name] = helps.get(name, "")
                children.append((name, child))
    yield path, parser, subs
    for name, child in children:
        yield from command_tree(child, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's flags (its actions with option strings)."""
    return [a for a in parser._actions if a.option_strings]


def _shell_words(words: Iterable[str]) -> str:
    return " ".join(w for w in words if re.fullmatch(r"[A-Za-z0-9_.:/@%+=,-]+", w))


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of `parser` for `shell` (bash, zsh or fish)."""
    tree = list(command_tree(parser))
    if shell == "fish":
        return _fish(tree)
    lines = ["# agent completion (bash; zsh loads it through bashcompinit)", "_agent_complete() {",
             '    local cur prev path w i opts=""', '    cur="${COMP_WORDS[COMP_CWORD]}"',
             '    prev="${COMP_WORDS[COMP_CWORD-1]}"', '    path="agent"',
             '    for ((i=1; i<COMP_CWORD; i++)); do', '        w="${COMP_WORDS[i]}"', '        case "$path $w" in']
    nested = [" ".join(("agent", *path)) for path, _, _ in tree if path]
    if nested:
        lines.append("            " + "|".join(f'"{n}"' for n in nested) + ') path="$path $w";;')
    lines += ["        esac", "    done", '    case "$path $prev" in']
    for path, sub, _ in tree:
        for action in options(sub):
            if action.choices:
                for flag in action.option_strings:
                    lines.append(f'        "{" ".join(("agent", *path, flag))}") '
                                 f'COMPREPLY=($(compgen -W "{_shell_words(str(c) for c in action.choices)}" -- "$cur")); '
                                 "return;;")
    lines += ["    esac", '    case "$path" in']
    for path, sub, subs in tree:
        words = [*subs, *(f for a in options(sub) for f in a.option_strings)]
        lines.append(f'        "{" ".join(("agent", *path))}") opts="{_shell_words(words)}";;')
    lines += ["    esac", '    COMPREPLY=($(compgen -W "$opts" -- "$cur"))', "}"]
    if shell == "zsh":
        lines.insert(1, "autoload -U +X bashcompinit && bashcompinit")
    lines.append("complete -o default -F _agent_complete agent")
    return "\n".join(lines) + "\n"


def _fish(tree: CommandTree) -> str:
    def quoted(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    out = ["# agent completion (fish)", "complete -c agent -f"]
    for path, parser, subs in tree:
        if path:
            cond = " ; and ".join(f"__fish_seen_subcommand_from {word}" for word in path)
        else:
            cond = "__fish_use_subcommand"
        leaf = cond
        if subs and path:
            leaf = f"{cond} ; and not __fish_seen_subcommand_from {' '.join(subs)}"
        for name, text in subs.items():
            out.append(f"complete -c agent -n {quoted(leaf)} -a {name} -d {quoted(text.split('(')[0].strip())}")
        for action in options(parser):
            flags = []
            for flag in action.option_strings:
                flags.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
            values = f" -x -a {quoted(' '.join(str(c) for c in action.choices))}" if action.choices else (
                " -r" if action.nargs != 0 else "")
            help_text = (action.help or "").split("(")[0].strip()
            out.append(f"complete -c agent -n {quoted(cond)} {' '.join(flags)}{values} -d {quoted(help_text)}")
    return "\n".join(out) + "\n"
