"""Describe registered ops (for `augctl ops` and the README table) from the registry itself."""

from __future__ import annotations

import json
from typing import Any

from .base import REGISTRY


def describe_ops(names: list[str]) -> list[dict[str, Any]]:
    """Name, family, one-line doc and parameters (default, accepted values) of each op."""
    out = []
    for name in names:
        op = REGISTRY[name]
        params = [
            {
                "name": key,
                "default": param.normalize(param.default),
                "accepts": param.describe(),
                "doc": param.doc,
            }
            for key, param in op.params.items()
        ]
        out.append({"name": name, "family": op.family, "doc": op.doc, "params": params})
    return out


def markdown_table() -> str:
    """The README's op table: one row per op, grouped by family."""
    lines = ["| op | family | parameters (default) | what it does |", "|---|---|---|---|"]
    for entry in sorted(describe_ops(list(REGISTRY)), key=lambda e: (e["family"], e["name"])):
        params = ", ".join(f"`{p['name']}` ({_short(p['default'])})" for p in entry["params"])
        doc = entry["doc"].replace("|", "\\|")
        lines.append(f"| `{entry['name']}` | {entry['family']} | {params or '—'} | {doc} |")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text.replace("|", "\\|")
