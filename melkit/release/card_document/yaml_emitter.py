"""A small YAML emitter for the model card's front matter: block style, keys in the dict's order, strings quoted
only when YAML would read them otherwise, so the same data always gives the same bytes (no dependency on a YAML
library's version or settings)."""

from __future__ import annotations

import json
import math
import re

__all__ = ["to_yaml"]

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.+/-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _yaml_scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "null"
    s = str(v)
    if _PLAIN.fullmatch(s) and s.lower() not in _YAML_WORDS:
        return s
    return json.dumps(s)  # a JSON string is a YAML double-quoted scalar


def _yaml_lines(obj, indent: int) -> list:
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = _yaml_scalar(str(k))
            if isinstance(v, dict) and v:
                lines += [f"{pad}{key}:"] + _yaml_lines(v, indent + 2)
            elif isinstance(v, list) and v and not all(isinstance(x, (int, float)) for x in v):
                lines += [f"{pad}{key}:"] + _yaml_lines(v, indent)  # block sequence at the key's indent
            else:
                lines.append(f"{pad}{key}: {_yaml_inline(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and item:
                sub = _yaml_lines(item, indent + 2)
                lines += [f"{pad}- {sub[0].lstrip()}"] + sub[1:]
            else:
                lines.append(f"{pad}- {_yaml_inline(item)}")
    else:
        lines.append(pad + _yaml_inline(obj))
    return lines


def _yaml_inline(v) -> str:
    if isinstance(v, dict):
        if v:
            raise ValueError("a non-empty mapping is written as a block")
        return "{}"
    if isinstance(v, list):
        return "[" + ", ".join(_yaml_scalar(x) for x in v) + "]"
    return _yaml_scalar(v)


def to_yaml(obj: dict) -> str:
    """``obj`` (dicts, lists, str, int, float, bool, None) as block YAML, keys in the dict's order."""
    return "\n".join(_yaml_lines(obj, 0)) + "\n"
