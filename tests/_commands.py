"""Reading the `agent ...` command lines a text shows (the demos' next steps), as argv lists."""

from __future__ import annotations

import re
import shlex


def agent_commands(text: str) -> list[list[str]]:
    """Every `agent ...` command line the text shows: a command line (its `  # comment`
    dropped), one after `: ` or `; ` (how to stop), one in backticks; without the `agent`."""
    found = [shlex.split(quoted)[1:] for quoted in re.findall(r"`(agent [^`]+)`", text)]
    for line in re.sub(r"`agent [^`]+`", "", text).splitlines():
        for part in re.split(r"(?:: |; )(?=agent )", line.strip()):
            if part.startswith("agent "):
                found.append(shlex.split(part.split("  #")[0])[1:])
    return found
