"""Cast, CastLike, QuantizeLinear and DequantizeLinear.

A Cast case's dtype is the type cast to and from float32 (or another partner): the samples
`float32_to_int8` and `int8_to_float32` are cases of dtype int8. Values follow the ONNX Cast
rules: float to float rounds to nearest even and overflows to +-inf, as integer to float does;
float to integer truncates toward zero and is undefined out of range (never drawn, nor nan);
integer to integer keeps the low bits; anything to bool is `!= 0`. Scales are initializers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from onnx import helper

from xpuport.conformance.spec import FLOATS, Const, OpSpec, Sample, Values, finfo, numpy_dtype

PARTNERS = {  # dtype: the dtypes it is cast to and from
    "float16": ("float32", "int32"),
    "bfloat16": ("float32", "float16", "int32"),
    "int32": ("float32", "int64"),
    "int64": ("float32",),
    "int8": ("float32", "int32", "uint8"),
    "uint8": ("float32", "int32"),
    "bool": ("float32", "int32"),
}


def to(dtype: str) -> int:
    return helper.np_dtype_to_tensor_dtype(numpy_dtype(dtype))


def ties(target: str) -> np.ndarray:
    """Halfway between neighbours of `target` (1 + k ulps / 2), near its largest finite
    value, and below its smallest subnormal: each rounds to nearest even."""
    limits = finfo(target)
    ulp = 2.0 ** -int(limits.nmant)
    halfway = 1 + np.arange(1, 8) * ulp / 2
    top = float(limits.max) * np.array([1 + ulp / 4, 1 - ulp / 4])  # both round to max
    tiny = float(limits.smallest_subnormal) * np.array([0.25, 0.5, 0.75, 1.5, 2.5])
    return np.concatenate([halfway, -halfway, top, tiny, -tiny])


def values(v: Values, target: str) -> np.ndarray:
    """Values of v's dtype that `target` holds, or rounds by a rule ONNX defines."""
    if v.dtype == "bool":
        return v.bools(4, 6)
    if target == "bool":  # zeros (-0 and nan too, for floats) among other values
        some = v.cast(np.where(v.bools(16), v(16, low=-3, high=3), 0))
        return np.concatenate([some, v.special()]) if v.dtype in FLOATS else some
    if v.dtype in FLOATS and target not in FLOATS:  # truncation, within the target's range
        info = np.iinfo(target)  # uint8: -0.99 truncates to 0, in range
        return v(4, 6, low=max(info.min, -100) - 0.99, high=min(info.max, 100) + 0.99)
    if v.dtype in FLOATS:  # float to float: random values, ties, overflow to inf, the edges
        random = v(16, low=-1000, high=1000)
        return np.concatenate([random, v.cast(ties(target)), v.special()])
    info = np.iinfo(v.dtype)
    if target in FLOATS:  # integers beyond the target's exact range round to nearest even
        exact = 2 ** (int(finfo(target).nmant) + 1)
        big = min(info.max, 4 * exact) if target != "float16" else 60000
        extremes = v.cast([info.min, info.max])  # int32 to float16: +-inf
        return np.concatenate([v(16, low=max(info.min, -big), high=big), extremes])
    return v(4, 8, low=info.min, high=info.max)  # integer to integer: wraps


def pairs(v: Values) -> Iterator[tuple[str, np.ndarray, str]]:
    """(name, values, target) of a cast from and to each partner of v's dtype."""
    for partner in PARTNERS[v.dtype]:
        for source, target in ((partner, v.dtype), (v.dtype, partner)):
            name = f"{source}_to_{target}"
            yield name, values(Values(f"Cast/{name}", source), target), target


def cast(v: Values) -> Iterator[Sample]:
    for name, x, target in pairs(v):
        yield Sample(name, (x,), {"to": to(target)})
    yield Sample("empty", (v(0, 3),), {"to": to(PARTNERS[v.dtype][0])})


def cast_like(v: Values) -> Iterator[Sample]:
    """The target type comes from a second input, a tensor of that type."""
    for name, x, target in pairs(v):
        yield Sample(name, (x, np.zeros((2,), dtype=numpy_dtype(target))))


def quantize(v: Values) -> Iterator[Sample]:
    """x = scale * (k + f), |k| <= 20, |f| <= 1/4: x / scale is within 1/4 + 3 * 20.25 * 2**-8
    < 1/2 of k though x, 1/scale and the quotient be rounded to bfloat16, so every sound
    implementation rounds it to k. A power-of-two scale divides exactly: halves round to even."""
    scale = v.cast(0.05)
    k, f = v.ints(4, 8, low=-20, high=20), v.rng.uniform(-0.25, 0.25, size=(4, 8))
    x = v.cast(scale.astype(np.float64) * (k + f))
    yield Sample("uint8", (x, Const(scale), Const(np.array(128, dtype=np.uint8))))
    yield Sample("int8", (x, Const(scale), Const(np.array(-3, dtype=np.int8))))
    yield Sample("default_uint8", (v.cast(np.abs(x)), Const(scale)))
    halves = v.cast(v.ints(4, 16, low=-300, high=300))
    yield Sample("halves_saturate", (halves, Const(v.cast(2.0)), Const(np.array(0, np.int8))))
    per_channel = (Const(v.cast([0.25, 0.5, 0.125])), Const(np.array([0, 10, -10], np.int8)))
    yield Sample("per_channel", (v(2, 3, 4, low=-8, high=8), *per_channel), {"axis": 1})


def dequantize(v: Values) -> Iterator[Sample]:
    """The integer input is data; the output dtype is v's, the scale's."""
    scale = Const(v.cast(0.05))
    uint8 = v.ints(4, 8, low=0, high=255, dtype="uint8")
    int8 = v.ints(4, 8, low=-128, high=127, dtype="int8")
    yield Sample("uint8", (uint8, scale, Const(np.array(128, dtype=np.uint8))))
    yield Sample("int8", (int8, scale, Const(np.array(-3, dtype=np.int8))))
    yield Sample("int32_bias", (v.ints(16, low=-5000, high=5000, dtype="int32"), scale))
    per_channel = (Const(v.cast([0.25, 0.1, 0.125])), Const(np.array([0, 10, -10], np.int8)))
    yield Sample("per_channel", (v.ints(2, 3, 4, low=-128, high=127, dtype="int8"),
                                 *per_channel), {"axis": 1})


SPECS = (
    OpSpec("Cast", cast, tuple(PARTNERS), kind="exact", golden="native"),
    OpSpec("CastLike", cast_like, ("float16", "bfloat16", "int32"), kind="exact",
           golden="native"),
    OpSpec("QuantizeLinear", quantize, FLOATS, kind="exact"),
    OpSpec("DequantizeLinear", dequantize, FLOATS, kind="rounding"),
)
