"""The one tolerance policy, and the error measures every case records.

Basis: a float result may differ from the float64 golden by the rounding of its own dtype.
With u the unit roundoff of the output dtype (half an ULP at 1.0):

    rtol = u * (BASE_ULPS[kind] + LAMBDA * sqrt(n))   for kind "accumulate" (n = terms summed)
    rtol = u * BASE_ULPS[kind]                        otherwise
    atol = rtol                                       (samples are drawn with |x| = O(1))

The sqrt(n) term is the probabilistic bound of Higham and Mary (SIAM J. Sci. Comput. 41(5),
2019): a sum of n terms in precision u errs by at most LAMBDA * sqrt(n) * u times the sum of
magnitudes, except with probability below 2 * exp(-LAMBDA**2 / 2) (about 4e-6 for LAMBDA 5).
An element passes when |actual - golden| <= atol + rtol * |golden|, nan matches nan, and an
infinity matches the same infinity. Integer and bool results, and data movement, are exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from xpuport.conformance.spec import Override, ToleranceKind, finfo, is_float, numpy_dtype

UNIT_ROUNDOFF = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
}
BASE_ULPS: dict[ToleranceKind, float] = {
    "exact": 0.0,  # Reshape, Gather, Cast to int...: bit for bit
    # u is half an ULP: 2u = 1 ULP, for the result's rounding and one intermediate's
    "rounding": 2.0,
    "transcendental": 16.0,  # 8 ULPs: libm-grade exp/log/tanh/erf are within a few
    "accumulate": 2.0,
}
LAMBDA = 5.0


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    basis: str
    override: str | None = None  # the reason, when a spec widened the policy

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def policy(kind: ToleranceKind, dtype: str, accumulation: int = 1) -> Tolerance:
    """The policy's tolerance for a result of `dtype` from an op of `kind`."""
    if kind == "exact" or not is_float(dtype):
        return Tolerance(0.0, 0.0, "exact")
    u = UNIT_ROUNDOFF[dtype]
    ulps = BASE_ULPS[kind]
    basis = f"{kind}: {ulps:g}u"
    if kind == "accumulate":
        ulps += LAMBDA * math.sqrt(max(accumulation, 1))
        basis = f"accumulate n={accumulation}: ({BASE_ULPS[kind]:g} + {LAMBDA:g}*sqrt(n))u"
    return Tolerance(u * ulps, u * ulps, basis)


def with_override(tolerance: Tolerance, override: Override | None) -> Tolerance:
    if override is None:
        return tolerance
    return Tolerance(override.rtol, override.atol, tolerance.basis, override.reason)


@dataclass(frozen=True)
class Errors:
    """How far one output is from its golden, and whether it is within tolerance."""

    max_abs: float
    max_rel: float
    max_ulp: float
    mismatch_ratio: float
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.mismatch_ratio == 0.0 and not self.message

    def to_json(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}


def _finite(value: Any) -> Any:
    # JSON has no inf/nan; an infinite error is reported as a string a reader can see.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def measure(actual: np.ndarray, golden: np.ndarray, dtype: str, tol: Tolerance) -> Errors:
    """Compare a backend's output with the golden (float64, or native for exact ops)."""
    if actual.shape != golden.shape:
        return Errors(math.inf, math.inf, math.inf, 1.0,
                      f"shape {list(actual.shape)} != expected {list(golden.shape)}")
    if actual.dtype != numpy_dtype(dtype):
        return Errors(math.inf, math.inf, math.inf, 1.0,
                      f"dtype {actual.dtype} != expected {dtype}")
    if actual.size == 0:
        return Errors(0.0, 0.0, 0.0, 0.0)
    if actual.dtype.kind in "OSU":  # strings: equal or not
        return Errors(0.0, 0.0, 0.0, float(np.mean(actual != golden)))
    if not is_float(dtype):
        wrong = actual != golden
        diff = np.abs(actual.astype(np.float64) - golden.astype(np.float64))
        return Errors(float(diff.max()), float((diff / np.maximum(np.abs(golden), 1)).max()),
                      float(diff.max()), float(wrong.mean()))
    return _measure_float(actual.astype(np.float64), golden.astype(np.float64), dtype, tol)


def _measure_float(actual: np.ndarray, golden: np.ndarray, dtype: str, tol: Tolerance) -> Errors:
    both_nan = np.isnan(actual) & np.isnan(golden)
    same_inf = np.isinf(golden) & (actual == golden)
    special = both_nan | same_inf
    finite = ~special & np.isfinite(golden) & np.isfinite(actual)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(finite, np.abs(actual - golden), 0.0)
    bad = ~special & ~finite  # nan or inf on one side only, or infinities of opposite sign
    with np.errstate(divide="ignore", invalid="ignore"):
        bad |= finite & (diff > tol.atol + tol.rtol * np.abs(golden))
        rel = np.where(finite, diff / np.maximum(np.abs(golden), _tiny(dtype)), 0.0)
        ulp = np.where(finite, diff / ulp_of(golden, dtype), 0.0)
    unmatched = bool((~special & ~finite).any())
    inf = math.inf
    return Errors(
        inf if unmatched else float(diff.max()),
        inf if unmatched else float(rel.max()),
        inf if unmatched else float(ulp.max()),
        float(bad.mean()),
    )


def _tiny(dtype: str) -> float:
    return float(finfo(dtype).tiny)


def ulp_of(values: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of `dtype` at each value (the subnormal spacing near zero)."""
    limits = finfo(dtype)
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log2(np.maximum(np.abs(values), float(limits.tiny))))
    spacing: np.ndarray = np.exp2(exponent - limits.nmant)
    result: np.ndarray = np.maximum(spacing, float(limits.smallest_subnormal))
    return result
