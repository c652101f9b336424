"""Exceptions with enough context to act on: which file, line and field, and what was expected."""

from __future__ import annotations

from pathlib import Path


class RecembedError(Exception):
    """Base class of every error recembed raises on purpose."""


class DataError(RecembedError, ValueError):
    """Malformed or inconsistent input data.

    The message always names where the problem is (file, 1-based line, field) when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class UnknownIdError(DataError, KeyError):
    """An external id that is not in a vocabulary (and the policy is to refuse it)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class NotFittedError(RecembedError, RuntimeError):
    """A model was used before `fit` (or `load`)."""


class ConfigError(RecembedError, ValueError):
    """A hyperparameter or option with an invalid name or value; the message names the key."""


class ResourceError(RecembedError, MemoryError):
    """A computation would need more memory than the machine has; the message says how much."""


def did_you_mean(name: str, choices: object) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to ``name``, or ``""`` when none is close."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)  # type: ignore[attr-defined]
    return f" (did you mean {close[0]!r}?)" if close else ""
