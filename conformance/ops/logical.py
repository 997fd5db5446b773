"""Comparisons, boolean logic, bitwise integer ops, and Where.

Comparisons draw from a few values (halves for floats) so that ties occur, and compare the
edge values (nan, +-0, +-inf) for floats. Bitwise ops draw the whole range of their dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from xpuport.conformance.spec import FLOATS, OpSpec, Sample, SampleFn, Values, is_float

INTS = ("int32", "int64")
BITWISE = ("int32", "int64", "int8", "uint8")
UNSIGNED_SHIFT = ("uint8", "uint16", "uint32", "uint64")


def ties(v: Values, *shape: int) -> np.ndarray:
    """Values from a small set: -2..2 in halves (floats), -2..2 (integers), or bools."""
    if v.dtype == "bool":
        return v.bools(*shape)
    if is_float(v.dtype):
        return v.cast(v.ints(*shape, low=-4, high=4) / 2)
    return v(*shape, low=-2, high=2)


def full(v: Values, *shape: int) -> np.ndarray:
    """Any value of an integer dtype, its minimum and maximum included."""
    info = np.iinfo(v.dtype)
    return v.rng.integers(info.min, info.max, size=shape, dtype=v.dtype, endpoint=True)


def all_shapes(v: Values) -> bool:
    """Scalar and empty inputs test shape handling, not the op: one float, one int dtype."""
    return v.dtype in ("float32", "int32", "bool")


def binary(draw: Callable[..., np.ndarray]) -> SampleFn:
    def samples(v: Values) -> Iterator[Sample]:
        yield Sample("same_shape", (draw(v, 3, 4, 5), draw(v, 3, 4, 5)))
        yield Sample("broadcast", (draw(v, 3, 1, 5), draw(v, 1, 4, 1)))
        if all_shapes(v):
            yield Sample("scalar", (draw(v, 2, 3), draw(v)))
            yield Sample("empty", (draw(v, 0, 3), draw(v, 3)))
        if is_float(v.dtype):  # every pair of edge values, nan and -0 == 0 included
            edge = v.special()[[0, 1, 2, 3, 4, 5, 7, 8]]
            yield Sample("special_values", (edge[:, None], edge[None, :]))

    return samples


def unary(draw: Callable[..., np.ndarray]) -> SampleFn:
    def samples(v: Values) -> Iterator[Sample]:
        yield Sample("tensor", (draw(v, 3, 4, 5),))
        if all_shapes(v):
            yield Sample("scalar", (draw(v),))
            yield Sample("empty", (draw(v, 2, 0),))

    return samples


def bit_shift(v: Values) -> Iterator[Sample]:
    """Shift amounts stay below the bit width, where C leaves the result undefined; a left
    shift drops the bits shifted out."""
    bits = np.iinfo(v.dtype).bits
    amount = v.ints(3, 4, 5, low=0, high=bits - 1, dtype=v.dtype)
    yield Sample("left", (full(v, 3, 4, 5), amount), {"direction": "LEFT"})
    yield Sample("right", (full(v, 3, 4, 5), amount), {"direction": "RIGHT"})
    yield Sample("right_broadcast", (full(v, 4, 6), amount[0, 0, :1]), {"direction": "RIGHT"})


def where(v: Values) -> Iterator[Sample]:
    yield Sample("same_shape", (v.bools(3, 4, 5), v(3, 4, 5), v(3, 4, 5)))
    yield Sample("broadcast", (v.bools(3, 1, 5), v(1, 4, 1), v(4, 5)))
    if all_shapes(v):
        yield Sample("scalar_branches", (v.bools(2, 3), v(), v()))
        yield Sample("empty", (v.bools(0, 3), v(0, 3), v(3)))


def bools(v: Values, *shape: int) -> np.ndarray:
    return v.bools(*shape)


COMPARED = FLOATS + INTS
SPECS = (
    OpSpec("Equal", binary(ties), (*COMPARED, "bool"), kind="exact"),
    OpSpec("Greater", binary(ties), COMPARED, kind="exact"),
    OpSpec("GreaterOrEqual", binary(ties), COMPARED, kind="exact"),
    OpSpec("Less", binary(ties), COMPARED, kind="exact"),
    OpSpec("LessOrEqual", binary(ties), COMPARED, kind="exact"),
    OpSpec("And", binary(bools), ("bool",), kind="exact"),
    OpSpec("Or", binary(bools), ("bool",), kind="exact"),
    OpSpec("Xor", binary(bools), ("bool",), kind="exact"),
    OpSpec("Not", unary(bools), ("bool",), kind="exact"),
    OpSpec("BitwiseAnd", binary(full), BITWISE, kind="exact", golden="native"),
    OpSpec("BitwiseOr", binary(full), BITWISE, kind="exact", golden="native"),
    OpSpec("BitwiseXor", binary(full), BITWISE, kind="exact", golden="native"),
    OpSpec("BitwiseNot", unary(full), BITWISE, kind="exact", golden="native"),
    OpSpec("BitShift", bit_shift, UNSIGNED_SHIFT, kind="exact", golden="native"),
    OpSpec("Where", where, (*FLOATS, *INTS, "bool"), kind="exact"),
)
