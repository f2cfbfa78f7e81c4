"""Python leaking into user-facing text: what the output scan of every test (tests/conftest.py)
and the help/completion tests look for."""

from __future__ import annotations

import re

PYTHON_IN_OUTPUT = re.compile(
    r"\{'|\['"                       # a dict or list repr: {'GET': 33} / ['a']
    r"|\[Errno -?\d+\]"              # an OSError's str()
    r"|Traceback \(most recent call last\)"
    r"|[{,]None[,}]"                 # None among argparse choices: {None,github,...}
    r"|\bissue #\d"                  # an issue number
)


def python_in(text: str) -> list[str]:
    """The lines of `text` that show Python instead of words (see PYTHON_IN_OUTPUT)."""
    return [line for line in text.splitlines() if PYTHON_IN_OUTPUT.search(line)]
