"""Names a build notes as it runs (the thread pools its kernels start, the kernels tuning
records scheduled), gathered for the caller that wraps the build: TVM's passes return
modules, not side results, so the caller opens a collection and the passes extend it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar


@contextmanager
def collecting(names_of: ContextVar[list[str] | None]) -> Iterator[list[str]]:
    """A list that what runs inside extends through `names_of` (what a build noted)."""
    names: list[str] = []
    token = names_of.set(names)
    try:
        yield names
    finally:
        names_of.reset(token)


def note(names_of: ContextVar[list[str] | None], names: Iterable[str]) -> None:
    """Add `names` to the collection open on `names_of`; nothing where none is open."""
    collected = names_of.get()
    if collected is not None:
        collected.extend(names)
