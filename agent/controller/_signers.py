"""The controller's `--verify-signatures FILE`: checked at start (a bad file stops `agent run`
with exit 2), re-read before each verification (a Secret mounted as a file changes in place, so
a key added to it counts without a restart), and watched after a refusal: when the file changes,
the refused commit is verified again without waiting for a new one."""

from __future__ import annotations

import logging
from pathlib import Path

from agent.errors import AgentError
from agent.source import SignerKeys

log = logging.getLogger("modelops.controller")


class SignersFile:
    def __init__(self, path: Path) -> None:
        self.keys = SignerKeys.load(path)
        self._refused_with: str | None = None  # the file's digest when a commit was last refused

    def current(self) -> SignerKeys:
        """The file as it is now (SignersFileError when it became unusable)."""
        fresh = self.keys.reload()
        if fresh is not self.keys:
            log.info("the signers file changed: now %s", fresh.description)
            self.keys = fresh
        return fresh

    def refused(self) -> None:
        self._refused_with = self.keys.digest

    def accepted(self) -> None:
        self._refused_with = None

    def changed_since_refusal(self) -> bool:
        """Whether a commit was refused and the file changed since: verify it again."""
        if self._refused_with is None:
            return False
        try:
            return self.current().digest != self._refused_with  # kept: _load's current() reads it unchanged
        except AgentError:
            return False  # an unusable file: the refusal stands
