"""Stripe's request encoding: application/x-www-form-urlencoded with bracketed keys.

`items[0][price]=price_1&metadata[external_id]=acme` <-> {"items": [{"price": "price_1"}],
"metadata": {"external_id": "acme"}}. Values stay strings, as Stripe receives them.
"""

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


class FormError(ValueError):
    """The body is not a Stripe-style form."""


def _path(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        raise FormError(f"malformed parameter name {key!r}")
    return [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]


def _listify(node: Any) -> Any:
    # Dicts whose keys are all indices ("0", "1", ...) were arrays on the caller's side.
    if isinstance(node, dict):
        node = {k: _listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    return node


def decode(body: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = _path(key)
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FormError(f"parameter {key!r} conflicts with a scalar of the same name")
            node = child
        last = parts[-1]
        if last == "":
            # `expand[]=a&expand[]=b`: append-style arrays.
            last = str(len(node))
        node[last] = value
    listified: dict[str, Any] = _listify(result)
    return listified


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _flatten(f"{prefix}[{key}]" if prefix else str(key), child, out)
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            _flatten(f"{prefix}[{index}]", child, out)
    elif value is None:
        out.append((prefix, ""))
    elif isinstance(value, bool):
        out.append((prefix, "true" if value else "false"))
    else:
        out.append((prefix, str(value)))


def encode(params: dict[str, Any]) -> str:
    out: list[tuple[str, str]] = []
    _flatten("", params, out)
    return urlencode(out)
