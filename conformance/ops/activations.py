"""Activations: rectifiers, sigmoids, smooth units, and Softmax/LogSoftmax/Hardmax over an axis.

Attributes are drawn at their defaults and at one other exported value. Thresholds (the
alpha of ThresholdedRelu, lambd) are exact in every dtype: an implementation compares them
with the input in the input's dtype, where 0.3 would round otherwise than in the golden.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from xpuport.conformance.spec import FLOATS, Const, OpSpec, Sample, SampleFn, Values, is_float

HALF_SINGLE = ("float32", "float16")  # ONNX allows no bfloat16 for these
INTS = ("int32", "int64")


def num(v: Values, *shape: int) -> np.ndarray:
    return v(*shape, low=-4, high=4) if is_float(v.dtype) else v(*shape, low=-10, high=10)


def all_shapes(v: Values) -> bool:
    """Scalar and empty inputs test shape handling, not arithmetic: one float, one int dtype."""
    return v.dtype in ("float32", "int32")


def unary(
    *attributes: Mapping[str, Any], edges: bool = False, scalar: bool = True, terms: int = 1
) -> SampleFn:
    """A tensor (and a scalar and an empty one in all_shapes dtypes); a 4-D tensor per other
    attribute set. `terms`: the rounded operations of a kind "accumulate" op."""

    def samples(v: Values) -> Iterator[Sample]:
        yield Sample("tensor", (num(v, 3, 4, 5),), accumulation=terms)
        if all_shapes(v):
            if scalar:
                yield Sample("scalar", (num(v),), accumulation=terms)
            yield Sample("empty", (num(v, 0, 3),))
        for index, attrs in enumerate(attributes):
            yield Sample(f"attributes{index}", (num(v, 2, 3, 4, 4),), attrs, accumulation=terms)
        if edges and is_float(v.dtype):
            yield Sample("special_values", (v.special(),))

    return samples


def prelu(v: Values) -> Iterator[Sample]:
    """The slope is a trained initializer: per channel of NCHW, per feature, or one value."""
    yield Sample("per_channel", (num(v, 2, 3, 4, 4), Const(num(v, 3, 1, 1))))
    yield Sample("per_feature", (num(v, 5, 8), Const(num(v, 8))))
    yield Sample("scalar_slope", (num(v, 4, 6), Const(num(v))))


def gelu(v: Values) -> Iterator[Sample]:
    for approximate in ("none", "tanh"):
        yield Sample(approximate, (num(v, 3, 4, 5),), {"approximate": approximate})
    yield Sample("scalar_tanh", (num(v),), {"approximate": "tanh"})


def shrink(v: Values) -> Iterator[Sample]:
    """Floats: |x| <= 4 around lambd 0.5 and 1.5; integers: whole thresholds and biases."""
    yield Sample("default", (num(v, 3, 4, 5),))  # lambd 0.5, bias 0
    big = {"lambd": 1.5, "bias": 0.5} if is_float(v.dtype) else {"lambd": 3.0, "bias": 2.0}
    yield Sample("lambd_bias", (num(v, 4, 8),), big)


def distinct(v: Values, *shape: int) -> np.ndarray:
    """A permutation of whole numbers around 0: no ties, exact in every float dtype."""
    n = int(np.prod(shape))
    return v.cast((v.permutation(n) - n // 2).reshape(shape) / 8)


def along_axis(draw: Callable[..., np.ndarray], ties: bool = False) -> SampleFn:
    """Softmax-like ops; accumulation is the length of the axis they normalize."""

    def samples(v: Values) -> Iterator[Sample]:
        yield Sample("last_axis", (draw(v, 3, 4, 16),), accumulation=16)
        yield Sample("axis1", (draw(v, 2, 8, 5),), {"axis": 1}, accumulation=8)
        yield Sample("axis0_2d", (draw(v, 32, 3),), {"axis": 0}, accumulation=32)
        if all_shapes(v):
            yield Sample("empty_batch", (draw(v, 0, 7),), accumulation=7)
        if ties:  # Hardmax marks the first of equal maxima
            yield Sample("ties", (v.cast(v.ints(5, 6, low=0, high=2)),))

    return samples


def shifted(v: Values, *shape: int) -> np.ndarray:
    """Logits around +-40 with a spread of 8: exp overflows float16 (and float32 at 89)
    unless the maximum is subtracted first, as every numerically sound softmax does."""
    offset = 40.0 if v.rng.random() < 0.5 else -40.0
    return v(*shape, low=offset - 4, high=offset + 4)


def logits(v: Values) -> Iterator[Sample]:
    yield from along_axis(num)(v)
    yield Sample("large_logits", (shifted(v, 4, 12),), accumulation=12)


SPECS = (
    OpSpec("Relu", unary(edges=True), (*FLOATS, *INTS, "int8"), kind="exact"),
    OpSpec("LeakyRelu", unary({"alpha": 0.2}, edges=True), FLOATS),
    OpSpec("PRelu", prelu, FLOATS + INTS),
    OpSpec("Elu", unary({"alpha": 0.5}), HALF_SINGLE, kind="transcendental"),
    OpSpec("Selu", unary({"alpha": 1.5, "gamma": 1.25}), HALF_SINGLE, kind="transcendental"),
    OpSpec("Celu", unary({"alpha": 2.0}), ("float32",), kind="transcendental"),
    OpSpec("Sigmoid", unary(edges=True), FLOATS, kind="transcendental"),
    OpSpec("HardSigmoid", unary({"alpha": 0.25, "beta": 0.375}), HALF_SINGLE),
    # x * clamp(x / 6 + 1/2): 4 rounded operations (1/6 itself is rounded), not one
    OpSpec("HardSwish", unary(terms=4), HALF_SINGLE, kind="accumulate"),
    OpSpec("Tanh", unary(edges=True), FLOATS, kind="transcendental"),
    OpSpec("Softplus", unary(), HALF_SINGLE, kind="transcendental"),
    # onnx's reference Softsign fails on a 0-d input (np.divide into a numpy scalar)
    OpSpec("Softsign", unary(scalar=False), HALF_SINGLE),
    OpSpec("Gelu", gelu, FLOATS, kind="transcendental"),
    OpSpec("Mish", unary(), HALF_SINGLE, kind="transcendental"),
    OpSpec("ThresholdedRelu", unary({"alpha": 2.0}), HALF_SINGLE, kind="exact"),
    OpSpec("Softmax", logits, FLOATS, kind="accumulate"),
    OpSpec("LogSoftmax", logits, FLOATS, kind="accumulate"),
    OpSpec("Hardmax", along_axis(distinct, ties=True), FLOATS, kind="exact"),
    OpSpec("Shrink", shrink, HALF_SINGLE + INTS),
)
