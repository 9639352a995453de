"""Typed errors raised by the augctl library; the CLI maps them to exit codes."""

from __future__ import annotations

from collections.abc import Iterable


class AugctlError(Exception):
    """Base class of every error augctl raises on purpose."""

    exit_code = 1


class UsageError(AugctlError):
    """The call itself is wrong: bad paths, options that don't combine."""

    exit_code = 2


class RecipeError(UsageError):
    """A recipe is invalid; the message names file, line, column and step path."""

    def __init__(
        self,
        message: str,
        *,
        file: str = "<recipe>",
        line: int = 0,
        column: int = 0,
        path: str = "",
    ) -> None:
        self.file, self.line, self.column, self.path, self.reason = (
            file,
            line,
            column,
            path,
            message,
        )
        where = f"{file}:{line}:{column}" if line else file
        super().__init__(f"{where}: {path + ': ' if path else ''}{message}")


class PlanError(UsageError):
    """The input tree cannot be planned (no classes, colliding names, ...)."""


class OutputError(AugctlError):
    """The output directory cannot be used as asked (other recipe, unwritable, disk full)."""


class SourceError(AugctlError):
    """One source image cannot be used; recorded in errors.csv rather than raised to users."""


class EngineError(AugctlError):
    """The execution engine failed: a Dask scheduler that can't be reached, a lost task."""


class MergeError(AugctlError):
    """Shard parts can't be merged: from different plans, missing, doubled or incomplete."""


def did_you_mean(word: object, options: Iterable[object]) -> str:
    """A "; did you mean 'x'?" hint, or ""; case is ignored ('HFlip' is 'hflip', not 'vflip')."""
    import difflib  # not at import time: the CLI's --help imports this module

    by_folded = {str(o).casefold(): str(o) for o in options}
    close = difflib.get_close_matches(str(word).casefold(), list(by_folded), n=1, cutoff=0.6)
    return f"; did you mean '{by_folded[close[0]]}'?" if close else ""
