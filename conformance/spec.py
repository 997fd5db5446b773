"""The OpSpec record: what one ONNX op is tested with, and the values that drive it.

An op family file in `conformance/ops/` holds a tuple `SPECS` of OpSpec. A spec's sample
function receives a `Values` generator bound to one dtype and yields Samples; every value is
drawn in that dtype, so the backend and the float64 golden read the very same numbers.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import ml_dtypes
import numpy as np
import onnx
from numpy.typing import ArrayLike

FLOATS = ("float32", "float16", "bfloat16")
SIGNED = ("int64", "int32", "int16", "int8")
UNSIGNED = ("uint64", "uint32", "uint16", "uint8")
INTEGERS = SIGNED + UNSIGNED
ALL_NUMERIC = FLOATS + INTEGERS
# exact: data movement, integer and bool results; rounding: one correctly rounded operation;
# transcendental: library functions (exp, tanh, erf...); accumulate: sums of `accumulation` terms.
ToleranceKind = Literal["exact", "rounding", "transcendental", "accumulate"]
# float64: evaluate an upcast graph; native: the op's meaning depends on the dtype (casts...).
GoldenMode = Literal["float64", "native"]


def numpy_dtype(name: str) -> np.dtype[Any]:
    """numpy's dtype for a name; bfloat16 comes from ml_dtypes."""
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def finfo(name: str) -> Any:
    """Float limits of a dtype name, bfloat16 included (numpy's finfo does not know it)."""
    return ml_dtypes.finfo(numpy_dtype(name))  # type: ignore[no-untyped-call]  # untyped lib


def is_float(name: str) -> bool:
    return name in ("float64", *FLOATS)


@dataclass(frozen=True)
class Const:
    """An input held as an initializer, as exported models hold shapes, axes and indices."""

    value: np.ndarray


# A runtime input, a constant input, or None for an omitted optional input.
Input = np.ndarray | Const | None


@dataclass(frozen=True)
class Sample:
    """One call of the op: its inputs, attributes and accumulation length (terms per output)."""

    name: str
    inputs: tuple[Input, ...]
    attributes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    accumulation: int = 1
    outputs: int = 1


@dataclass(frozen=True)
class Override:
    """A tolerance wider than the policy's, for one dtype of one op, with its reason."""

    rtol: float
    atol: float
    reason: str

    def __post_init__(self) -> None:
        if len(self.reason.strip()) < 10:
            raise ValueError("a tolerance override needs a written reason")


class Values:
    """Draws sample values of one dtype from a generator seeded by the op and dtype."""

    def __init__(self, op: str, dtype: str) -> None:
        self.dtype = dtype
        self.rng = np.random.default_rng(zlib.crc32(f"{op}/{dtype}".encode()))

    def __call__(self, *shape: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
        """Uniform values in [low, high]; integers draw whole numbers, bool draws coin flips."""
        if self.dtype == "bool":
            return self.rng.random(shape) < 0.5
        if not is_float(self.dtype):
            info = np.iinfo(self.dtype)
            lo, hi = max(int(low), info.min), min(int(high), info.max)
            return self.rng.integers(lo, hi, size=shape, endpoint=True).astype(self.dtype)
        return self.cast(self.rng.uniform(low, high, size=shape))

    def positive(self, *shape: int, high: float = 4.0) -> np.ndarray:
        """Values in the domain of Log, Sqrt, Reciprocal: away from zero."""
        return self(*shape, low=0.125 if is_float(self.dtype) else 1, high=high)

    def ints(self, *shape: int, low: int, high: int, dtype: str = "int64") -> np.ndarray:
        """Whole numbers in [low, high] of an index dtype, whatever the case's dtype."""
        return self.rng.integers(low, high, size=shape, endpoint=True).astype(dtype)

    def bools(self, *shape: int) -> np.ndarray:
        return self.rng.random(shape) < 0.5

    def permutation(self, n: int) -> np.ndarray:
        return self.rng.permutation(n).astype("int64")

    def special(self) -> np.ndarray:
        """The edge values a float op must define: ±0, ±inf, nan, tiny and huge numbers."""
        limits = finfo(self.dtype)
        values = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, float(limits.tiny),
                  float(limits.max), -float(limits.max), 0.5, -2.5]
        return self.cast(np.array(values, dtype=np.float64))

    def cast(self, values: ArrayLike) -> np.ndarray:
        with np.errstate(over="ignore"):  # overflow to ±inf is what an edge sample wants
            return np.asarray(values).astype(numpy_dtype(self.dtype))


SampleFn = Callable[[Values], Iterable[Sample]]
# A composition (attention, RMSNorm...): the nodes from input names x0.. to output names y0..
NodesFn = Callable[[list[str], list[str], Sample], list[onnx.NodeProto]]


@dataclass(frozen=True)
class OpSpec:
    """One ONNX op under test: the dtypes it is checked in and how its samples are drawn."""

    op: str
    samples: SampleFn
    dtypes: tuple[str, ...]
    kind: ToleranceKind = "rounding"
    golden: GoldenMode = "float64"
    overrides: Mapping[str, Override] = field(default_factory=lambda: MappingProxyType({}))
    opset: int = 20
    family: str = ""
    nodes: NodesFn | None = None  # None: the single node `op`

    def __post_init__(self) -> None:
        stray = set(self.overrides) - set(self.dtypes)
        if stray:
            raise ValueError(f"{self.op}: overrides for dtypes it is not tested in: {stray}")
