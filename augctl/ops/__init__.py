"""The op registry: every op is a pure `sample`/`apply` pair registered by recipe name."""

from __future__ import annotations

# Importing a family registers its ops.
from . import erasing, geometric, mixing, photometric, policies  # noqa: F401
from .base import REGISTRY, Op, Param

__all__ = ["REGISTRY", "Op", "Param"]
