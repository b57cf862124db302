"""A small structural JSON diff: what an edited replay payload changes, as JSON Pointer ops."""

from typing import Any


def _pointer(parts: list[str]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def diff(old: Any, new: Any, *, _path: list[str] | None = None) -> list[dict[str, Any]]:
    """Operations (add, remove, replace) that turn `old` into `new`; [] when equal."""
    path = _path or []
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = [*path, str(key)]
            if key not in new:
                ops.append({"op": "remove", "path": _pointer(sub), "old": old[key], "new": None})
            elif key not in old:
                ops.append({"op": "add", "path": _pointer(sub), "old": None, "new": new[key]})
            else:
                ops += diff(old[key], new[key], _path=sub)
        return ops
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            op
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for op in diff(a, b, _path=[*path, str(i)])
        ]
    if old == new and type(old) is type(new):
        return []
    return [{"op": "replace", "path": _pointer(path), "old": old, "new": new}]
