"""augctl: an offline, deterministic image-dataset expander with a provenance manifest."""

from __future__ import annotations

from typing import Any

__version__ = "0.2.1"

# Heavy modules (numpy, Pillow) load on first use, so `augctl --help` starts fast.
_LAZY = {
    "expand": "augctl.api",
    "Summary": "augctl.api",
    "describe_plan": "augctl.api",
    "PlanSummary": "augctl.api",
    "merge": "augctl.shards",
    "MergeSummary": "augctl.shards",
    "load_recipe": "augctl.recipe",
    "Recipe": "augctl.recipe",
    "verify": "augctl.audit",
    "replay": "augctl.audit",
    "preview": "augctl.contact_sheet",
}

from .errors import (  # noqa: E402
    AugctlError,
    EngineError,
    MergeError,
    OutputError,
    PlanError,
    RecipeError,
    SourceError,
    UsageError,
)

__all__ = [
    "AugctlError",
    "EngineError",
    "MergeError",
    "MergeSummary",
    "OutputError",
    "PlanError",
    "PlanSummary",
    "Recipe",
    "RecipeError",
    "SourceError",
    "Summary",
    "UsageError",
    "__version__",
    "describe_plan",
    "expand",
    "load_recipe",
    "merge",
    "preview",
    "replay",
    "verify",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'augctl' has no attribute {name!r}")
