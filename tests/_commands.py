"""Reading the command lines a text shows (the demos' next steps, how to stop and how to keep),
as argv lists: `agent ...` ones, or those of another program (`devenv ...`)."""

from __future__ import annotations

import re
import shlex


def agent_commands(text: str, program: str = "agent") -> list[list[str]]:
    """Every `PROGRAM ...` command line the text shows (default `agent`): a command line (its
    `  # comment` dropped), one after `: ` or `; ` (how to stop), one in backticks; without the
    program's name."""
    name = re.escape(program)
    found = [shlex.split(quoted)[1:] for quoted in re.findall(rf"`({name} [^`]+)`", text)]
    for line in re.sub(rf"`{name} [^`]+`", "", text).splitlines():
        for part in re.split(rf"(?:: |; )(?={name} )", line.strip()):
            if part.startswith(program + " "):
                found.append(shlex.split(part.split("  #")[0])[1:])
    return found
