"""Elementwise arithmetic and math functions, with broadcasting, scalars, empties and edges.

Integers draw whole numbers in [-10, 10]: no product or integer Pow overflows. Edge values
(v.special(): +-0, +-inf, nan, tiny, huge) are drawn for floats, where the op defines them and
its result stays in range (not max + max, finite in the float64 golden); binary ops pair
them with their reverse: inf - max, 1 / -0, nan * tiny...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from xpuport.conformance.spec import FLOATS, Const, OpSpec, Sample, SampleFn, Values, is_float

Draw = Callable[..., np.ndarray]  # draw(v, *shape): values of v's dtype
INTS = ("int32", "int64")
HALF_SINGLE = ("float32", "float16")  # ONNX allows no bfloat16 for Round and the trig ops


def num(v: Values, *shape: int) -> np.ndarray:
    return v(*shape, low=-2, high=2) if is_float(v.dtype) else v(*shape, low=-10, high=10)


def nonzero(v: Values, *shape: int) -> np.ndarray:
    """Divisors: +-[0.125, 4] for floats, +-[1, 4] for integers."""
    return np.asarray(v.positive(*shape) * np.where(v.bools(*shape), 1, -1).astype(v.dtype))


def all_shapes(v: Values) -> bool:
    """Scalar and empty inputs test shape handling, not arithmetic: one float, one int dtype."""
    return v.dtype in ("float32", "int32")


def within(low: float, high: float) -> Draw:
    return lambda v, *shape: v(*shape, low=low, high=high)


def unary(draw: Draw = num, edges: bool = False) -> SampleFn:
    def samples(v: Values) -> Iterator[Sample]:
        yield Sample("tensor", (draw(v, 3, 4, 5),))
        if all_shapes(v):
            yield Sample("scalar", (draw(v),))
            yield Sample("empty", (draw(v, 2, 0),))
        if edges and is_float(v.dtype):
            yield Sample("special_values", (v.special(),))

    return samples


def binary(draw_b: Draw = num) -> SampleFn:
    def samples(v: Values) -> Iterator[Sample]:
        yield Sample("same_shape", (num(v, 3, 4, 5), draw_b(v, 3, 4, 5)))
        yield Sample("broadcast", (num(v, 3, 1, 5), draw_b(v, 1, 4, 1)))
        if all_shapes(v):
            yield Sample("scalar", (num(v, 2, 3), draw_b(v)))
            yield Sample("empty", (num(v, 0, 3), draw_b(v, 3)))
        if is_float(v.dtype):
            yield Sample("special_values", (v.special(), v.special()[::-1]))

    return samples


def pow_(v: Values) -> Iterator[Sample]:
    """Floats: a positive base to any power; every dtype: any base to a small whole power."""
    if is_float(v.dtype):
        yield Sample("positive_base", (v.positive(3, 4, 5), v(3, 4, 5, low=-2, high=2)))
        yield Sample("square_const", (v(2, 3, low=-3, high=3), Const(v.cast(2.0))))
    whole = v.ints(4, 5, low=0, high=4)
    yield Sample("whole_exponent", (v(4, 5, low=-5, high=5), whole))  # int64 exponent
    yield Sample("broadcast_same_type", (v(3, 1, low=-5, high=5), v.cast(whole[0])))


def mod(v: Values) -> Iterator[Sample]:
    """fmod=0 (sign of the divisor) is integer-only; fmod=1 (sign of the dividend) for all."""
    if not is_float(v.dtype):
        yield Sample("mod", (num(v, 3, 4, 5), nonzero(v, 3, 4, 5)))
    yield Sample("fmod", (num(v, 3, 4, 5), nonzero(v, 3, 4, 5)), {"fmod": 1})
    yield Sample("fmod_broadcast", (num(v, 4, 6), nonzero(v, 6)), {"fmod": 1})


def rounding(v: Values) -> Iterator[Sample]:
    """Floor, Ceil, Round: whole numbers, halves (Round: half to even) and random values."""
    yield Sample("halves", (v.cast(np.arange(-12, 13).reshape(5, 5) / 4),))
    yield Sample("random", (v(4, 6, low=-10, high=10),))
    yield Sample("special_values", (v.special(),))


def sign(v: Values) -> Iterator[Sample]:
    yield Sample("tensor", (num(v, 3, 4, 5),))
    # the edges but nan, whose sign ONNX leaves undefined; zeros for integers
    edges = v.special()[[0, 1, 2, 3, 7, 8, 9]] if is_float(v.dtype) else v.cast([0, 1, -1, 0])
    yield Sample("zeros_and_edges", (edges,))


def variadic(edges: bool) -> SampleFn:
    """Max, Min, Sum, Mean of 1 to 3 inputs; accumulation is the number of inputs."""

    def samples(v: Values) -> Iterator[Sample]:
        if all_shapes(v):
            yield Sample("one", (num(v, 3, 4),))
        # the first input has the full shape: onnx's reference Mean adds into a copy of it
        yield Sample("two_broadcast", (num(v, 3, 4, 5), num(v, 4, 1)), accumulation=2)
        yield Sample("three_scalar", (num(v, 2, 3), num(v), num(v, 3)), accumulation=3)
        if edges and is_float(v.dtype):  # nan is undefined for Max and Min: not drawn
            edge = v.special()[[0, 1, 2, 3, 7, 8, 9, 10, 11]]
            yield Sample("special_values", (edge, edge[::-1]), accumulation=2)

    return samples


def clip(v: Values) -> Iterator[Sample]:
    lo, hi = (v.cast(-0.5), v.cast(0.75)) if is_float(v.dtype) else (v.cast(-3), v.cast(5))
    yield Sample("min_max", (num(v, 4, 5), Const(lo), Const(hi)))
    yield Sample("min_only", (num(v, 4, 5), Const(lo), None))
    yield Sample("max_only_scalar", (num(v), None, Const(hi)))
    yield Sample("min_above_max", (num(v, 6), Const(hi), Const(lo)))  # all become max


def is_inf(v: Values) -> Iterator[Sample]:
    yield Sample("special_values", (v.special(),))
    yield Sample("positive_only", (v.special(),), {"detect_negative": 0})
    yield Sample("negative_only", (v.special(),), {"detect_positive": 0})


def is_nan(v: Values) -> Iterator[Sample]:
    yield Sample("special_values", (v.special(),))
    yield Sample("tensor", (np.where(v.bools(3, 4), v(3, 4), v.cast(np.nan)),))


NUMERIC = FLOATS + INTS
TRIG = {  # the domain each is drawn in; Tan away from its poles at +-pi/2
    "Sin": (-8, 8), "Cos": (-8, 8), "Tan": (-1.2, 1.2), "Asin": (-0.95, 0.95),
    "Acos": (-0.95, 0.95), "Atan": (-4, 4), "Sinh": (-3, 3), "Cosh": (-3, 3),
    "Asinh": (-4, 4), "Acosh": (1.05, 5), "Atanh": (-0.95, 0.95),
}
POSITIVE = within(0.125, 4)  # as v.positive: the domain of Log, Sqrt, Reciprocal
SPECS = (
    OpSpec("Add", binary(), NUMERIC),
    OpSpec("Sub", binary(), NUMERIC),
    OpSpec("Mul", binary(), NUMERIC),
    OpSpec("Div", binary(nonzero), NUMERIC),  # integers: truncation toward zero
    OpSpec("Pow", pow_, NUMERIC, kind="transcendental"),
    OpSpec("Mod", mod, NUMERIC),
    OpSpec("Neg", unary(edges=True), NUMERIC, kind="exact"),
    OpSpec("Abs", unary(edges=True), NUMERIC, kind="exact"),
    OpSpec("Reciprocal", unary(POSITIVE, edges=True), FLOATS),
    OpSpec("Sqrt", unary(POSITIVE, edges=True), FLOATS),
    OpSpec("Exp", unary(edges=True), FLOATS, kind="transcendental"),
    OpSpec("Log", unary(POSITIVE, edges=True), FLOATS, kind="transcendental"),
    OpSpec("Floor", rounding, FLOATS, kind="exact"),
    OpSpec("Ceil", rounding, FLOATS, kind="exact"),
    OpSpec("Round", rounding, HALF_SINGLE, kind="exact"),
    OpSpec("Sign", sign, NUMERIC, kind="exact"),
    OpSpec("Max", variadic(edges=True), NUMERIC, kind="exact"),
    OpSpec("Min", variadic(edges=True), NUMERIC, kind="exact"),
    OpSpec("Mean", variadic(edges=False), FLOATS, kind="accumulate"),
    OpSpec("Sum", variadic(edges=False), FLOATS, kind="accumulate"),
    OpSpec("Clip", clip, NUMERIC, kind="exact"),
    OpSpec("Erf", unary(within(-3, 3), edges=True), FLOATS, kind="transcendental"),
    OpSpec("IsNaN", is_nan, FLOATS, kind="exact"),
    OpSpec("IsInf", is_inf, FLOATS, kind="exact"),
    *(OpSpec(op, unary(within(low, high)), HALF_SINGLE, kind="transcendental")
      for op, (low, high) in TRIG.items()),
)
