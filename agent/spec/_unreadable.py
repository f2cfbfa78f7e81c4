"""What the documents that could not be read may declare, so that only the first cause is reported.

A Monitor file with an indentation error loses its documents; without this, every Model whose
rollout names that Monitor's rules would also get `rule 'error-rate' is not a rule of a Monitor
... (no Monitor ... declares rules)`, and a Monitor of a Model whose file does not parse would
get `Model 'x' not found`. Those follow from the first error and mislead. So the loader notes
what an unreadable document may declare (from the text of a file that did not parse, or the
data of a document that failed its schema or its own checks) and a cross-reference to it is
not reported: the document's own error is. This never makes an invalid repo valid: the first
cause is always an error of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_KIND = re.compile(r"""^[ \t-]*kind:[ \t]*["']?([A-Za-z][A-Za-z0-9]*)""", re.MULTILINE)
_NAME = re.compile(r"""\bname:[ \t]*["']?([a-z0-9][-a-z0-9.]*)""")
_WATCHED = re.compile(r"""\bmodel:[ \t]*["']?([a-z0-9][-a-z0-9.]*)""")
_OURS = ("Model", "ServingRuntime", "Monitor")
_API_GROUP = "modelops.dev"


@dataclass
class Unreadable:
    """Names that unreadable documents may declare, per what they would be; None: any name."""

    models: set[str] | None = field(default_factory=set)  # Model names
    runtimes: set[str] | None = field(default_factory=set)  # ServingRuntime names
    watched: set[str] | None = field(default_factory=set)  # Model names a Monitor may watch

    def may_declare_model(self, name: str) -> bool:
        return self.models is None or name in self.models

    def may_declare_runtime(self, name: str) -> bool:
        return self.runtimes is None or name in self.runtimes

    def may_watch(self, model: str) -> bool:
        """Some unreadable Monitor may watch Model `model` (and declare rules for it)."""
        return self.watched is None or model in self.watched

    def _add(self, kind: str, names: set[str] | None) -> None:
        attribute = {"Model": "models", "ServingRuntime": "runtimes", "Monitor": "watched"}[kind]
        current: set[str] | None = getattr(self, attribute)
        setattr(self, attribute, None if current is None or names is None else current | names)

    def add_text(self, text: str) -> None:
        """A file that did not parse (whole or in part): the kinds of ours its text names, with
        the names it mentions; every kind of ours when it mentions our apiVersion but no kind
        can be read; nothing when it mentions neither (it holds none of ours)."""
        kinds = set(_KIND.findall(text)) & set(_OURS)
        if not kinds and _API_GROUP in text:
            kinds = set(_OURS)
        names = set(_NAME.findall(text)) or None
        for kind in kinds:
            self._add(kind, (set(_WATCHED.findall(text)) or None) if kind == "Monitor" else names)

    def add_data(self, data: Any) -> None:
        """A document that was read but failed its kind, schema or own checks."""
        if not isinstance(data, Mapping):
            return
        kind = data.get("kind")
        meta = data.get("metadata")
        spec = data.get("spec")
        name = meta.get("name") if isinstance(meta, Mapping) else None
        names = {name} if isinstance(name, str) else None
        watched = spec.get("model") if isinstance(spec, Mapping) else None
        for candidate in _OURS if kind not in _OURS else (kind,):
            self._add(candidate, ({watched} if isinstance(watched, str) else None) if candidate == "Monitor" else names)
