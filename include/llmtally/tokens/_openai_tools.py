"""OpenAI tool definitions as the API writes them into the prompt.

The model never sees the JSON schemas of ``tools`` (or legacy ``functions``): the API rewrites them
into TypeScript-like declarations appended to the first system message of the request (or to a
system message it adds)::

    namespace functions {

    // Get the current weather
    type get_weather = (_: {
    // The city, e.g. Paris
    location: string,
    unit?: "celsius" | "fahrenheit",
    }) => any;

    } // namespace functions

Published API counts (``tests/tokens/data/openai_tools_fixtures.json``, each case with its source)
show two layouts of nested objects.  Counts measured in 2023 and early 2024 fit nested properties
indented two spaces per level with descriptions below the top level left out; counts measured in
May 2024 fit no indentation and descriptions at every depth.  A request does not say which
snapshot serves it, so :func:`tool_prompt` renders both and the counter takes the larger count:
exact when the layouts agree (no nested objects), otherwise over by their difference.

Verified by those counts (cl100k_base; for o200k_base only the cookbook's flat example): function and
property descriptions as ``//`` comments, ``key?:`` for optional properties, ``string``, ``number``
(also for ``integer``), ``boolean``, ``null``, string enums as quoted unions, integer enums
unquoted, ``T[]`` arrays, nested objects, ``anyOf`` as a union, a property's ``default`` as a
trailing ``// default: <json>`` comment, ``const``, ``additionalProperties`` and the parameters' own
``description`` not rendered, ``any`` for a property without a type, ``() => any`` for a function
without properties.  A ``tool_choice`` of ``"required"`` has no published count (see the counter).

Not covered by any published count, so over-counted by a small margin: every other schema keyword
(``title``, ``format``, ``minimum``, ``pattern``, ``examples``, ``$ref``, ``nullable``, ``strict`` …)
adds the tokens of a ``// key: value`` line; ``oneOf`` and ``allOf`` render as unions, a list of
types as a union; a multi-line description is commented line by line; a tool that is not a
function adds the tokens of its JSON.  One known over-count: on the May 2024 counts a property
without a description (other than a string enum) cost one token less than its rendering (six
fixtures; the cause is unknown, so it is not modelled).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._exceptions import InputError

__all__ = ["ToolPrompt", "tool_prompt"]

# keywords the published counts show are not rendered
_UNRENDERED = frozenset({"additionalProperties", "const"})
_SCHEMA_KEYS = frozenset({"type", "enum", "properties", "required", "items", "anyOf", "oneOf", "allOf"})
_PROPERTY_KEYS = _SCHEMA_KEYS | {"description", "default"}
_SIMPLE_TYPES = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "null": "null",
}
_PARAMETER_KEYS = frozenset({"type", "properties", "required", "description"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters"})


@dataclass(frozen=True)
class ToolPrompt:
    """The texts a request's tool definitions add to its prompt."""

    layouts: tuple[str, ...]
    """The ``namespace functions`` block in each layout the API has been seen to use."""
    extras: tuple[str, ...]
    """Margins for what no published count covers (unmodelled keywords, non-function tools)."""
    names: tuple[str, ...]
    """The function names, in order."""


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}// {line}" for line in text.split("\n")]


class _Layout:
    """Renders functions in one layout; collects margins when ``extras`` is given."""

    def __init__(self, *, flat: bool, extras: list[str] | None) -> None:
        self._flat = flat
        self._extras = extras

    def _extra(self, schema: Mapping[str, Any], handled: frozenset[str]) -> None:
        if self._extras is None:
            return
        for key, value in schema.items():
            if key not in handled and key not in _UNRENDERED:
                self._extras.append(f"// {key}: {json.dumps(value, ensure_ascii=False, default=str)}")

    def type_of(self, schema: Any, depth: int, *, prop: bool = False) -> str:
        """The type expression of ``schema``; a property's description and default are placed by
        :meth:`properties`."""
        if not isinstance(schema, Mapping):
            return "any"
        self._extra(schema, _PROPERTY_KEYS if prop else _SCHEMA_KEYS)
        for union in ("anyOf", "oneOf", "allOf"):
            variants = schema.get(union)
            if isinstance(variants, list) and variants:
                return " | ".join(self.type_of(v, depth) for v in variants)
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return " | ".join(_literal(v) for v in enum)
        kind = schema.get("type")
        if isinstance(kind, list) and kind:
            return " | ".join(_SIMPLE_TYPES.get(k, "any") if isinstance(k, str) else "any" for k in kind)
        if kind == "object" or (kind is None and isinstance(schema.get("properties"), Mapping)):
            return "{\n" + self.properties(schema, depth + 1) + "\n}"
        if kind == "array":
            items = schema.get("items")
            return (self.type_of(items, depth) if items is not None else "any") + "[]"
        return _SIMPLE_TYPES.get(kind, "any") if isinstance(kind, str) else "any"

    def properties(self, schema: Mapping[str, Any], depth: int) -> str:
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return ""
        listed = schema.get("required")
        required = {k for k in listed if isinstance(k, str)} if isinstance(listed, list) else set()
        indent = "" if self._flat else "  " * depth
        lines: list[str] = []
        for key, prop in props.items():
            desc = prop.get("description") if isinstance(prop, Mapping) else None
            if isinstance(desc, str) and desc and (self._flat or depth == 0):
                lines += _comment(desc, indent)
            line = f"{indent}{key}{'' if key in required else '?'}: {self.type_of(prop, depth, prop=True)},"
            if isinstance(prop, Mapping) and "default" in prop:
                line += f" // default: {json.dumps(prop['default'], ensure_ascii=False, default=str)}"
            lines.append(line)
        return "\n".join(lines)

    def namespace(self, functions: Sequence[Mapping[str, Any]]) -> str:
        lines = ["namespace functions {", ""]
        for fn in functions:
            self._extra(fn, _FUNCTION_KEYS)
            desc = fn.get("description")
            if isinstance(desc, str) and desc:
                lines += _comment(desc, "")
            params = fn.get("parameters")
            params = params if isinstance(params, Mapping) else {}
            self._extra(params, _PARAMETER_KEYS)
            props = params.get("properties")
            if isinstance(props, Mapping) and props:
                lines += [f"type {fn['name']} = (_: {{", self.properties(params, 0), "}) => any;"]
            else:
                lines.append(f"type {fn['name']} = () => any;")
            lines.append("")
        lines.append("} // namespace functions")
        return "\n".join(lines)


def tool_prompt(tools: Sequence[Mapping[str, Any]]) -> ToolPrompt:
    """The prompt texts of ``tools``: ``{"type": "function", "function": {...}}`` entries or bare
    function definitions (the legacy ``functions`` parameter)."""
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise InputError("tools must be a list of tool definitions")
    functions: list[Mapping[str, Any]] = []
    extras: list[str] = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            raise InputError('each tool needs {"type": "function", "function": {"name": ...}}')
        if tool.get("type", "function") != "function" and "function" not in tool:
            extras.append(json.dumps(tool, ensure_ascii=False, default=str))  # e.g. a custom tool
            continue
        fn = tool.get("function", tool)
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InputError('each tool needs {"type": "function", "function": {"name": ...}}')
        for key, value in tool.items():
            if fn is not tool and key not in ("type", "function"):
                extras.append(f"// {key}: {json.dumps(value, ensure_ascii=False, default=str)}")
        functions.append(fn)
    if not functions:
        return ToolPrompt((), tuple(extras), ())
    indented = _Layout(flat=False, extras=extras).namespace(functions)
    flat = _Layout(flat=True, extras=None).namespace(functions)
    return ToolPrompt((indented, flat), tuple(extras), tuple(fn["name"] for fn in functions))
