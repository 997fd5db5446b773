"""Indexing: gathers, scatters, OneHot, NonZero and Compress.

All exact; float32 runs every sample, the other dtypes the first (see shape.first_sample).
Indices are int64 initializers, as exported models hold them, except where exports feed them
at run time (token ids into an embedding, class labels into OneHot). Negative indices count
from the end of their axis.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from xpuport.conformance.ops.shape import DATA, first_sample, scalar
from xpuport.conformance.spec import Const, OpSpec, Sample, SampleFn, Values


def small(v: Values, *shape: int) -> np.ndarray:
    """Whole numbers in [-4, 4] (bool: coin flips): any sum of a few is exact in every dtype."""
    return v.bools(*shape) if v.dtype == "bool" else v.cast(v.ints(*shape, low=-4, high=4))


def distinct(v: Values, rows: int, n: int, k: int) -> np.ndarray:
    """`rows` rows of k distinct positions in [0, n), some written as negative indices."""
    picks = np.stack([v.permutation(n)[:k] for _ in range(rows)])
    return np.where(v.bools(rows, k), picks - n, picks)


def gather(v: Values) -> Iterator[Sample]:
    yield Sample("axis0_negative", (v(5, 4), Const(v.ints(2, 3, low=-5, high=4))))
    yield Sample("embedding_runtime_ids", (v(16, 8), v.ints(2, 5, low=0, high=15)))
    yield Sample("axis1_negative", (v(3, 5, 2), Const(v.ints(2, 2, low=-5, high=4))),
                 {"axis": 1})
    yield Sample("scalar_index_last", (v(3, 4, 2), scalar(-1)), {"axis": 1})


def gather_elements(v: Values) -> Iterator[Sample]:
    yield Sample("axis0", (v(3, 4), Const(v.ints(2, 4, low=-3, high=2))))
    # axis 2, not -1: onnx's reference GatherElements does not normalize a negative axis
    yield Sample("last_axis", (v(2, 3, 5), Const(v.ints(2, 3, 2, low=-5, high=4))), {"axis": 2})


def gather_nd(v: Values) -> Iterator[Sample]:
    rows, cols = v.ints(2, low=-3, high=2), v.ints(2, low=-4, high=3)
    yield Sample("pairs", (v(3, 4, 2), Const(np.stack([rows, cols], axis=-1))))
    yield Sample("batch_dims_1", (v(2, 3, 4), Const(v.ints(2, 2, 1, low=-3, high=2))),
                 {"batch_dims": 1})


def scatter_elements(v: Values) -> Iterator[Sample]:
    # reduction none: distinct positions per row, else the written value is unspecified
    yield Sample("none_axis1", (v(3, 5), Const(distinct(v, 3, 5, 2)), v(3, 2)), {"axis": 1})
    if v.dtype != "bool":  # repeated positions sum their updates: exact on small integers
        yield Sample("add_repeated_axis0",
                     (small(v, 4, 3), Const(v.ints(5, 3, low=-4, high=3)), small(v, 5, 3)),
                     {"reduction": "add"})


def scatter_nd(v: Values) -> Iterator[Sample]:
    slices = Const(v.permutation(4)[:2].reshape(2, 1))
    yield Sample("none_slices", (v(4, 3, 2), slices, v(2, 3, 2)))
    if v.dtype != "bool":
        pairs = Const(np.array([[0, 1], [2, 2], [0, 1]], dtype=np.int64))  # (0, 1) twice
        yield Sample("add_repeated_elements", (small(v, 3, 4), pairs, small(v, 3)),
                     {"reduction": "add"})


def one_hot(v: Values) -> Iterator[Sample]:
    depth = scalar(5)
    yield Sample("runtime_labels", (v.ints(2, 3, low=-5, high=4), depth, Const(v.cast([0, 1]))))
    yield Sample("axis0_const", (Const(v.ints(4, low=-5, high=4)), depth,
                                 Const(v.cast([-2, 3]))), {"axis": 0})


def non_zero(v: Values) -> Iterator[Sample]:
    x = np.where(v.bools(3, 4), v(3, 4), v.cast(0))
    if v.dtype != "bool":
        x.flat[0] = v.cast(-0.0)  # -0.0 is zero
    yield Sample("mixed", (x,))
    yield Sample("all_zero", (v.cast(np.zeros((2, 3))),))
    yield Sample("rank3", (np.where(v.bools(2, 3, 2), v(2, 3, 2), v.cast(0)),))


def compress(v: Values) -> Iterator[Sample]:
    yield Sample("axis0", (v(4, 3), Const(np.array([True, False, True, True]))), {"axis": 0})
    yield Sample("axis1_short_condition", (v(2, 5), Const(np.array([False, True, True]))),
                 {"axis": 1})
    yield Sample("flattened", (v(2, 3), Const(v.bools(6))))


def exact(op: str, fn: SampleFn, dtypes: tuple[str, ...] = DATA) -> OpSpec:
    return OpSpec(op, first_sample(fn), dtypes, kind="exact")


NO_BFLOAT16 = tuple(dtype for dtype in DATA if dtype != "bfloat16")

SPECS = (
    exact("Gather", gather),
    exact("GatherElements", gather_elements),
    exact("GatherND", gather_nd),
    exact("ScatterElements", scatter_elements),
    exact("ScatterND", scatter_nd),
    # The values' dtype. ONNX has no bfloat16 OneHot; onnx's reference fails on bool values
    # (it computes on - off with numpy's boolean subtract).
    exact("OneHot", one_hot, ("float32", "float16", "int32", "int64")),
    exact("NonZero", non_zero),
    exact("Compress", compress, NO_BFLOAT16),
)
