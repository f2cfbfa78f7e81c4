"""The one askpass helper: how a token reaches one git child without being in argv, a URL or
any git config. git runs the script (which holds no secret) when the server asks for
credentials; the script answers from two variables set only in that child's environment."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ASKPASS_VARIABLES", "askpass_env", "write_askpass"]

# The environment variables (set only for one git child) through which the askpass helper
# learns what to answer. Their names are not secret; their values are.
_TOKEN_ENV = "MODELOPS_GIT_TOKEN"
_USER_ENV = "MODELOPS_GIT_USERNAME"
ASKPASS_VARIABLES = (_TOKEN_ENV, _USER_ENV)
_ASKPASS_SCRIPT = f"""#!/bin/sh
# Written by the modelops agent: answers git's credential prompts from its environment.
case "$1" in
  Username*) printf '%s\\n' "${_USER_ENV}" ;;
  *) printf '%s\\n' "${_TOKEN_ENV}" ;;
esac
"""


def write_askpass(path: Path) -> None:
    """Write the helper at `path` (atomically, mode 0700): it holds no secret, only reads env."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(_ASKPASS_SCRIPT)
    os.chmod(tmp, 0o700)
    os.replace(tmp, path)


def askpass_env(script: Path, token: str, username: str) -> dict[str, str]:
    """The variables of one git child that make it ask `script` for `username` and `token`."""
    return {"GIT_ASKPASS": str(script), _TOKEN_ENV: token, _USER_ENV: username}
