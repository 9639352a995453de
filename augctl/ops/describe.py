"""Describe registered ops (for `augctl ops` and the README table) from the registry itself."""

from __future__ import annotations

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
