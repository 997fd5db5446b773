"""Reductions (Reduce*, ArgMax/ArgMin), running sums (CumSum) and selection (TopK)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from xpuport.conformance.spec import FLOATS, Const, OpSpec, Sample, Values, is_float

INTS = ("int32", "int64")


def _axes(*axes: int) -> Const:
    return Const(np.array(axes, dtype=np.int64))


def _reduce(draw: Callable[..., np.ndarray], empty: bool) -> Callable[[Values], Iterator[Sample]]:
    """Samples of a Reduce* op on values from `draw(v, *shape)`; `empty`: the op defines the
    reduction of an empty set (0 for sums, 1 for a product, -inf for a log of a sum...)."""

    def samples(v: Values) -> Iterator[Sample]:
        yield Sample("axis1_keepdims", (draw(v, 3, 8, 5), _axes(1)), accumulation=8)
        yield Sample("negative_axes", (draw(v, 4, 6, 10), _axes(-1, 0)), {"keepdims": 0},
                     accumulation=40)
        yield Sample("all_axes", (draw(v, 6, 16),), accumulation=96)
        if empty:
            yield Sample("empty_axis", (draw(v, 3, 0, 4), _axes(1)), {"keepdims": 0})

    return samples


def signed(v: Values, *shape: int) -> np.ndarray:
    return v(*shape, low=-2, high=2) if is_float(v.dtype) else v(*shape, low=-20, high=20)


def positive(v: Values, *shape: int) -> np.ndarray:
    return v.positive(*shape, high=2.0)


def small(v: Values, *shape: int) -> np.ndarray:
    """Terms to square: |x| <= 1.5 for floats, |x| <= 3 for integers (96 squares < 900)."""
    return v(*shape, low=-1.5, high=1.5) if is_float(v.dtype) else v(*shape, low=-3, high=3)


def prod(v: Values, *shape: int) -> np.ndarray:
    """Factors in +-[0.75, 1.25] (floats) or +-1 with a few +-2 (integers): no underflow over
    96 terms, and |product| <= 2**(number of 2s) well inside int32."""
    sign = np.where(v.bools(*shape), 1.0, -1.0)
    if is_float(v.dtype):
        return v.cast(sign * v.rng.uniform(0.75, 1.25, size=shape))
    twos = v.rng.random(shape) < 0.1
    return (sign * np.where(twos, 2, 1)).astype(v.dtype)


def distinct(v: Values, *shape: int) -> np.ndarray:
    """A permutation of the integers around 0: no ties, exact in every dtype (bfloat16 holds
    integers up to 256 exactly)."""
    n = int(np.prod(shape))
    return v.cast((v.permutation(n) - n // 2).reshape(shape))


def arg(v: Values) -> Iterator[Sample]:
    yield Sample("axis1", (distinct(v, 3, 7, 4),), {"axis": 1})
    yield Sample("last_axis_no_keepdims", (distinct(v, 5, 12),), {"axis": -1, "keepdims": 0})
    ties = v.cast(v.ints(6, 8, low=0, high=2))  # many ties: the index is set by the attribute
    yield Sample("ties_first", (ties,), {"axis": 1, "select_last_index": 0})
    yield Sample("ties_last", (ties,), {"axis": 0, "select_last_index": 1})


def cumsum(v: Values) -> Iterator[Sample]:
    axis0, axis_neg = Const(np.array(0, dtype=np.int64)), Const(np.array(-1, dtype=np.int64))
    yield Sample("axis0", (signed(v, 16, 6), axis0), accumulation=16)
    yield Sample("exclusive", (signed(v, 4, 33), axis_neg), {"exclusive": 1}, accumulation=32)
    yield Sample("reverse", (signed(v, 2, 3, 20), axis_neg), {"reverse": 1}, accumulation=20)
    yield Sample("exclusive_reverse", (signed(v, 9, 5), axis0),
                 {"exclusive": 1, "reverse": 1}, accumulation=8)


def topk(v: Values) -> Iterator[Sample]:
    k3, k1 = Const(np.array([3], dtype=np.int64)), Const(np.array([1], dtype=np.int64))
    yield Sample("largest_last_axis", (distinct(v, 4, 16), k3), outputs=2)
    yield Sample("smallest_axis0", (distinct(v, 10, 3, 4), k3), {"axis": 0, "largest": 0},
                 outputs=2)
    yield Sample("k1", (distinct(v, 2, 5, 9), k1), {"axis": 1}, outputs=2)


EVERY = FLOATS + INTS
SPECS = (
    OpSpec("ReduceSum", _reduce(signed, empty=True), EVERY, kind="accumulate"),
    OpSpec("ReduceMean", _reduce(signed, empty=False), EVERY, kind="accumulate"),
    OpSpec("ReduceMax", _reduce(signed, empty=True), EVERY, kind="exact"),
    OpSpec("ReduceMin", _reduce(signed, empty=True), EVERY, kind="exact"),
    OpSpec("ReduceProd", _reduce(prod, empty=True), EVERY, kind="accumulate"),
    OpSpec("ReduceL1", _reduce(signed, empty=True), EVERY, kind="accumulate"),
    OpSpec("ReduceSumSquare", _reduce(small, empty=True), EVERY, kind="accumulate"),
    # sqrt, log and exp of a sum: the sum's error (sqrt(n) u) dominates the function's own
    # few ulps once n >= 8, as in every sample; the log of a sum of positives is absolute-
    # error bounded by the sum's relative error, which atol = rtol covers near log = 0.
    # Integer results of sqrt/log/exp are truncations of irrational values: floats only.
    OpSpec("ReduceL2", _reduce(signed, empty=True), FLOATS, kind="accumulate"),
    OpSpec("ReduceLogSum", _reduce(positive, empty=True), FLOATS, kind="accumulate"),
    OpSpec("ReduceLogSumExp", _reduce(signed, empty=True), FLOATS, kind="accumulate"),
    OpSpec("ArgMax", arg, EVERY, kind="exact"),
    OpSpec("ArgMin", arg, EVERY, kind="exact"),
    OpSpec("CumSum", cumsum, EVERY, kind="accumulate"),
    OpSpec("TopK", topk, ("float32", "float16", *INTS), kind="exact"),  # no bfloat16 in ONNX
)
