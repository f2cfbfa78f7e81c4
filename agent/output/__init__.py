"""Renderers of data for people and programs: plans as text/JSON/Markdown, objects as YAML/JSON."""

from agent.output._formats import as_dict, as_json, markdown, text, visible
from agent.output._yamldiff import to_yaml, unified

__all__ = ["as_dict", "as_json", "markdown", "text", "to_yaml", "unified", "visible"]
