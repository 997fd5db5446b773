"""Elementwise arithmetic and math functions, with broadcasting, scalars, empties and edges."""

from __future__ import annotations

from collections.abc import Iterator

from xpuport.conformance.spec import FLOATS, SIGNED, Const, OpSpec, Sample, Values


def binary(v: Values) -> Iterator[Sample]:
    yield Sample("same_shape", (v(3, 4, 5), v(3, 4, 5)))
    yield Sample("broadcast_row", (v(4, 6), v(6)))
    yield Sample("broadcast_both", (v(3, 1, 5), v(1, 4, 1)))
    yield Sample("scalar", (v(2, 3), v()))
    yield Sample("empty", (v(0, 3), v(3)))


def unary(v: Values) -> Iterator[Sample]:
    yield Sample("tensor", (v(3, 4, 5),))
    yield Sample("scalar", (v(),))
    yield Sample("empty", (v(2, 0),))


def unary_with_edges(v: Values) -> Iterator[Sample]:
    yield from unary(v)
    yield Sample("special_values", (v.special(),))


def positive_unary(v: Values) -> Iterator[Sample]:
    yield Sample("tensor", (v.positive(3, 4, 5),))
    yield Sample("scalar", (v.positive(),))


def clip(v: Values) -> Iterator[Sample]:
    yield Sample("min_max", (v(4, 5, low=-2, high=2), Const(v.cast(-0.5)), Const(v.cast(0.75))))
    yield Sample("min_only", (v(4, 5, low=-2, high=2), Const(v.cast(-0.5)), None))


SPECS = (
    OpSpec("Add", binary, FLOATS + SIGNED),
    OpSpec("Sqrt", positive_unary, FLOATS, kind="rounding"),
    OpSpec("Exp", unary_with_edges, FLOATS, kind="transcendental"),
    OpSpec("Clip", clip, (*FLOATS, "int32", "int64"), kind="exact"),
)
