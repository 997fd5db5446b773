"""Shape and data movement: reshapes, joins, splits, slices, pads and the shape-computing ops.

All exact. A data-movement kernel moves elements by their width, not their value, so float32
runs every sample of an op and the other dtypes run its first sample only (see `first_sample`).
Shapes, axes, pads, starts and ends are initializers (Const), as exported models hold them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
from onnx import numpy_helper

from xpuport.conformance.spec import Const, OpSpec, Sample, SampleFn, Values

DATA = ("float32", "float16", "bfloat16", "int32", "int64", "bool")
INT64_MAX, INT64_MIN = int(np.iinfo(np.int64).max), int(np.iinfo(np.int64).min)


def i64(*values: int) -> Const:
    """A constant int64 vector: a shape, axes, pads, starts, ends or repeats."""
    return Const(np.array(values, dtype=np.int64))


def scalar(value: int) -> Const:
    return Const(np.array(value, dtype=np.int64))


def first_sample(fn: SampleFn) -> SampleFn:
    """Every sample of `fn` in float32, its first sample alone in the other dtypes."""

    def samples(v: Values) -> Iterator[Sample]:
        drawn = iter(fn(v))
        yield from drawn if v.dtype == "float32" else itertools.islice(drawn, 1)

    return samples


def reshape(v: Values) -> Iterator[Sample]:
    yield Sample("copy_zero_infer_minus_one", (v(2, 3, 4), i64(0, -1)))
    yield Sample("split_heads", (v(2, 6, 8), i64(2, 6, 2, -1)))
    yield Sample("allowzero_empty", (v(0, 3), i64(3, 0)), {"allowzero": 1})


def transpose(v: Values) -> Iterator[Sample]:
    yield Sample("swap_heads", (v(2, 3, 4, 5),), {"perm": [0, 2, 1, 3]})
    yield Sample("default_reverse", (v(2, 3, 4),))


def flatten(v: Values) -> Iterator[Sample]:
    yield Sample("axis1", (v(2, 3, 4),))
    yield Sample("axis0", (v(2, 3, 4),), {"axis": 0})
    yield Sample("negative_axis", (v(2, 3, 4, 2),), {"axis": -2})


def squeeze(v: Values) -> Iterator[Sample]:
    yield Sample("axes", (v(2, 1, 3, 1), i64(1)))
    yield Sample("negative_axes", (v(2, 1, 3, 1), i64(-1, 1)))
    yield Sample("no_axes_all_ones", (v(1, 3, 1),))


def unsqueeze(v: Values) -> Iterator[Sample]:
    yield Sample("front", (v(3, 4), i64(0)))
    yield Sample("negative_axes", (v(3, 4), i64(-1, 1)))
    yield Sample("scalar", (v(), i64(0)))


def concat(v: Values) -> Iterator[Sample]:
    yield Sample("three_negative_axis", (v(2, 3, 1), v(2, 3, 4), v(2, 3, 2)), {"axis": -1})
    yield Sample("empty_input", (v(2, 3), v(0, 3), v(1, 3)), {"axis": 0})


def split(v: Values) -> Iterator[Sample]:
    yield Sample("sizes", (v(2, 6), i64(1, 3, 2)), {"axis": 1}, outputs=3)
    yield Sample("num_outputs_uneven", (v(7, 2),), {"num_outputs": 3}, outputs=3)
    yield Sample("num_outputs_last_axis", (v(2, 3, 8),), {"axis": -1, "num_outputs": 2},
                 outputs=2)


def slice_(v: Values) -> Iterator[Sample]:
    yield Sample("axes_steps", (v(4, 6, 5), i64(1, 0), i64(3, 5), i64(0, 2), i64(1, 2)))
    yield Sample("reverse", (v(3, 5), i64(-1), i64(INT64_MIN), i64(1), i64(-1)))
    yield Sample("clamped_no_steps", (v(3, 5), i64(-100, 1), i64(INT64_MAX, 100), i64(0, -1)))
    yield Sample("negative_step_2", (v(6, 4), i64(10), i64(0), i64(0), i64(-2)))


def expand(v: Values) -> Iterator[Sample]:
    yield Sample("broadcast", (v(3, 1), i64(2, 3, 4)))
    yield Sample("shape_has_ones", (v(2, 3, 4), i64(3, 1)))


def tile(v: Values) -> Iterator[Sample]:
    yield Sample("repeats", (v(2, 3), i64(2, 3)))
    yield Sample("ones_3d", (v(2, 1, 3), i64(1, 4, 1)))


def pad(v: Values) -> Iterator[Sample]:
    yield Sample("constant", (v(2, 3), i64(1, 0, 2, 1), Const(v.cast(0.5))))
    yield Sample("reflect", (v(3, 4), i64(1, 2, 2, 3)), {"mode": "reflect"})
    yield Sample("edge_axes", (v(2, 3, 4), i64(2, 1), None, i64(-1)), {"mode": "edge"})
    # No negative (cropping) pads: onnx's reference evaluator pads with np.pad, which rejects them.
    yield Sample("constant_default_zero", (v(2, 3, 2), i64(0, 1, 1, 1, 0, 2)))


def shape(v: Values) -> Iterator[Sample]:
    yield Sample("whole", (v(2, 3, 4),))
    yield Sample("start_end", (v(2, 3, 4, 5),), {"start": 1, "end": -1})
    yield Sample("clamped_start", (v(2, 3),), {"start": -10})


def any_tensor(v: Values) -> Iterator[Sample]:
    yield Sample("tensor", (v(2, 3, 4),))
    yield Sample("scalar", (v(),))
    yield Sample("empty", (v(3, 0),))


def constant_of_shape(v: Values) -> Iterator[Sample]:
    value = {"value": numpy_helper.from_array(v.cast([2.5]), "value")}
    yield Sample("value", (i64(2, 3),), value)
    yield Sample("scalar_output", (Const(np.zeros(0, np.int64)),), value)
    yield Sample("empty_dim", (i64(0, 3),), value)


def range_(v: Values) -> Iterator[Sample]:
    yield Sample("ascending", (Const(v.cast(-3)), Const(v.cast(10)), Const(v.cast(2))))
    # float32 alone runs the second sample: dyadic steps, every element exactly representable
    yield Sample("descending_fraction", (Const(v.cast(2)), Const(v.cast(-1)),
                                         Const(v.cast(-0.25))))
    yield Sample("empty", (Const(v.cast(5)), Const(v.cast(1)), Const(v.cast(1))))


def trilu(v: Values) -> Iterator[Sample]:
    yield Sample("upper", (v(4, 5),))
    yield Sample("lower_k_negative", (v(2, 4, 3), scalar(-1)), {"upper": 0})
    yield Sample("upper_k_positive", (v(3, 4), scalar(2)))


def eye_like(v: Values) -> Iterator[Sample]:
    yield Sample("square", (v(4, 4),))
    yield Sample("wide_k", (v(3, 5),), {"k": 1})
    yield Sample("tall_negative_k", (v(5, 3),), {"k": -2})


def constant(v: Values) -> Iterator[Sample]:
    yield Sample("tensor", (), {"value": numpy_helper.from_array(v(3, 4), "value")})
    yield Sample("scalar", (), {"value": numpy_helper.from_array(v(), "value")})


def dropout(v: Values) -> Iterator[Sample]:
    """Inference: the identity, whatever the ratio, as exported eval-mode models hold it."""
    yield Sample("inference", (v(3, 4, 5),), {"seed": 0})
    yield Sample("ratio_not_training", (v(2, 6), Const(np.array(0.5, np.float32)),
                                        Const(np.array(False))))


def exact(op: str, fn: SampleFn, dtypes: tuple[str, ...] = DATA) -> OpSpec:
    return OpSpec(op, first_sample(fn), dtypes, kind="exact")


SPECS = (
    exact("Reshape", reshape),
    exact("Transpose", transpose),
    exact("Flatten", flatten),
    exact("Squeeze", squeeze),
    exact("Unsqueeze", unsqueeze),
    exact("Concat", concat),
    exact("Split", split),
    exact("Slice", slice_),
    exact("Expand", expand),
    exact("Tile", tile),
    exact("Pad", pad),
    exact("Shape", shape),
    exact("Size", any_tensor),
    exact("Identity", any_tensor),
    exact("Constant", constant),
    exact("Dropout", dropout, ("float32", "float16", "bfloat16")),
    exact("ConstantOfShape", constant_of_shape),
    exact("Range", range_, ("float32", "int32", "int64")),
    exact("Trilu", trilu),
    exact("EyeLike", eye_like, ("float32", "float16", "int32", "int64", "bool")),  # no bfloat16
)
