"""Renderers of data for people and programs: plans as text/JSON/Markdown, objects as YAML/JSON."""

from agent.output._data import FORMATS, document, plain
from agent.output._formats import as_dict, as_json, markdown, markdown_grouped, text, visible
from agent.output._yamldiff import to_yaml, unified

__all__ = ["FORMATS", "as_dict", "as_json", "document", "markdown", "markdown_grouped", "plain", "text", "to_yaml", "unified", "visible"]
