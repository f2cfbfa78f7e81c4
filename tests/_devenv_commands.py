"""Reading the `devenv ...` command lines a text shows (the demos' how to stop and how to keep),
as argv lists: by the same rules as the `agent ...` ones (tests/_commands.py reads both)."""

from __future__ import annotations

import re

from tests._commands import agent_commands

_PROGRAMS = re.compile(r"\b(agent|devenv) ")


def devenv_commands(text: str) -> list[list[str]]:
    """Every `devenv ...` command line the text shows, without the `devenv`: agent_commands on
    the text with the two programs' names swapped (its `agent ...` lines are then not read)."""
    return agent_commands(_PROGRAMS.sub(lambda m: "devenv " if m[1] == "agent" else "agent ", text))
