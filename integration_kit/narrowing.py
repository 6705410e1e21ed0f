"""Type narrowing that holds in production too: an `assert isinstance` vanishes under
`python -O` (ruff's S101), this raises instead."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def narrowed(value: object, kind: type[T]) -> T:
    """`value` as a `kind`; TypeError if it is not one (a wiring mistake, never user input)."""
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value
