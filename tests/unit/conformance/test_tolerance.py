"""conformance/tolerance.py: the one tolerance policy and the error measures of a case."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from xpuport.conformance.spec import Override
from xpuport.conformance.tolerance import (
    LAMBDA,
    UNIT_ROUNDOFF,
    Tolerance,
    measure,
    policy,
    ulp_of,
    with_override,
)

U32 = 2.0**-24
ROUNDING32 = policy("rounding", "float32")


def _f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def _f64(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


# --- policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_exact_kind_is_zero_in_every_float_dtype(dtype):
    tol = policy("exact", dtype)

    assert (tol.rtol, tol.atol) == (0.0, 0.0)
    assert tol.basis == "exact"
    assert tol.override is None


def test_rounding_float32_is_two_unit_roundoffs():
    tol = policy("rounding", "float32")

    assert tol.rtol == 2 * 2.0**-24
    assert tol.atol == 2 * 2.0**-24
    assert "rounding" in tol.basis


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_rounding_scales_with_the_unit_roundoff_of_the_dtype(dtype):
    assert policy("rounding", dtype).rtol == 2 * UNIT_ROUNDOFF[dtype]


def test_transcendental_is_wider_than_rounding():
    assert policy("transcendental", "float32").rtol > policy("rounding", "float32").rtol


def test_accumulate_grows_with_sqrt_of_the_terms():
    tolerances = {n: policy("accumulate", "float32", n).rtol for n in (1, 4, 16, 10_000)}

    for n, rtol in tolerances.items():
        assert rtol == pytest.approx(U32 * (2.0 + LAMBDA * math.sqrt(n)))
    # four times the terms: the sqrt(n) part doubles, not quadruples
    growth = (tolerances[16] - 2 * U32) / (tolerances[4] - 2 * U32)
    assert growth == pytest.approx(2.0)
    assert "n=16" in policy("accumulate", "float32", 16).basis


def test_accumulate_of_zero_terms_counts_as_one():
    assert policy("accumulate", "float32", 0).rtol == policy("accumulate", "float32", 1).rtol


@pytest.mark.parametrize("kind", ["exact", "rounding", "transcendental", "accumulate"])
@pytest.mark.parametrize("dtype", ["int64", "int32", "int8", "uint8", "bool"])
def test_integer_and_bool_results_are_always_exact(kind, dtype):
    tol = policy(kind, dtype, accumulation=1000)

    assert (tol.rtol, tol.atol, tol.basis) == (0.0, 0.0, "exact")


def test_with_override_keeps_the_basis_and_carries_the_reason():
    base = policy("accumulate", "float16", 64)
    override = Override(1e-2, 1e-3, "fp16 accumulation in the vendor library")

    widened = with_override(base, override)

    assert (widened.rtol, widened.atol) == (1e-2, 1e-3)
    assert widened.basis == base.basis
    assert widened.override == "fp16 accumulation in the vendor library"
    assert widened.to_json()["override"] == widened.override


def test_with_no_override_is_the_policy_itself():
    base = policy("rounding", "float32")

    assert with_override(base, None) is base


# --- measure ----------------------------------------------------------------------------------


def test_within_tolerance_passes():
    golden = _f64(1.0, -2.0, 0.5)
    actual = (golden * (1 + U32)).astype(np.float32)  # one rounding away

    errors = measure(actual, golden, "float32", ROUNDING32)

    assert errors.passed
    assert errors.mismatch_ratio == 0.0
    assert errors.max_ulp <= 1.0


def test_just_outside_tolerance_fails():
    tol = Tolerance(1e-3, 0.0, "test")
    golden = _f64(1.0, 1.0)

    inside = measure(_f32(1.0, 1.0009765625), golden, "float32", tol)  # 1 + 2**-10 < 1 + 1e-3
    outside = measure(_f32(1.0, 1.001953125), golden, "float32", tol)  # 1 + 2**-9 > 1 + 1e-3

    assert inside.passed
    assert not outside.passed
    assert outside.mismatch_ratio == 0.5
    assert outside.max_abs == pytest.approx(2.0**-9)
    assert outside.max_rel == pytest.approx(2.0**-9)
    assert outside.max_ulp == pytest.approx(2.0**-9 / 2.0**-23)


def test_bound_is_atol_plus_rtol_times_golden():
    tol = Tolerance(rtol=0.0, atol=0.25, basis="test")

    assert measure(_f32(1.25), _f64(1.0), "float32", tol).passed
    assert not measure(_f32(1.5), _f64(1.0), "float32", tol).passed


def test_exact_tolerance_accepts_only_equal_values():
    exact = policy("exact", "float32")
    golden = _f64(1.0, 2.0)

    assert measure(_f32(1.0, 2.0), golden, "float32", exact).passed
    assert not measure(np.nextafter(_f32(1.0, 2.0), np.float32(3)), golden, "float32",
                       exact).passed


def test_nan_matches_nan():
    errors = measure(_f32(np.nan, 1.0), _f64(np.nan, 1.0), "float32", ROUNDING32)

    assert errors.passed
    assert (errors.max_abs, errors.max_rel, errors.max_ulp) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(("actual", "golden"), [(np.nan, 1.0), (1.0, np.nan)])
def test_nan_against_a_number_fails_with_infinite_errors(actual, golden):
    errors = measure(_f32(actual, 2.0), _f64(golden, 2.0), "float32", ROUNDING32)

    assert not errors.passed
    assert errors.mismatch_ratio == 0.5
    assert errors.max_abs == math.inf
    assert errors.max_rel == math.inf
    assert errors.max_ulp == math.inf
    assert errors.to_json()["max_abs"] == "inf"  # JSON has no infinity


def test_same_infinity_matches():
    errors = measure(_f32(np.inf, -np.inf), _f64(np.inf, -np.inf), "float32", ROUNDING32)

    assert errors.passed


def test_opposite_infinities_fail():
    errors = measure(_f32(-np.inf), _f64(np.inf), "float32", ROUNDING32)

    assert not errors.passed
    assert errors.mismatch_ratio == 1.0
    assert errors.max_abs == math.inf


def test_infinity_against_a_finite_number_fails():
    errors = measure(_f32(np.inf), _f64(3.0e38), "float32", ROUNDING32)

    assert not errors.passed
    assert errors.max_abs == math.inf


def test_shape_mismatch_is_a_message():
    errors = measure(np.zeros((2, 3), np.float32), np.zeros((3, 2)), "float32", ROUNDING32)

    assert not errors.passed
    assert errors.message == "shape [2, 3] != expected [3, 2]"
    assert errors.mismatch_ratio == 1.0


def test_dtype_mismatch_is_a_message():
    errors = measure(np.zeros(3, np.float16), np.zeros(3), "float32", ROUNDING32)

    assert not errors.passed
    assert "float16" in errors.message
    assert "expected float32" in errors.message


def test_empty_tensors_pass():
    errors = measure(np.zeros((0, 3), np.float32), np.zeros((0, 3)), "float32", ROUNDING32)

    assert errors.passed
    assert errors.mismatch_ratio == 0.0


def test_integers_are_compared_exactly():
    golden = np.array([1, 2, 3, 4], np.int64)
    tol = policy("rounding", "int64")

    assert measure(golden.copy(), golden, "int64", tol).passed
    off_by_one = measure(np.array([1, 2, 3, 5], np.int64), golden, "int64", tol)
    assert not off_by_one.passed
    assert off_by_one.mismatch_ratio == 0.25
    assert off_by_one.max_abs == 1.0


def test_integers_ignore_any_tolerance_given():
    golden = np.array([100], np.int32)
    loose = Tolerance(1.0, 1.0, "wide")

    assert not measure(np.array([101], np.int32), golden, "int32", loose).passed


def test_bool_results_are_exact():
    golden = np.array([True, False, True])

    assert measure(golden.copy(), golden, "bool", policy("exact", "bool")).passed
    assert measure(~golden, golden, "bool", policy("exact", "bool")).mismatch_ratio == 1.0


def test_bfloat16_correctly_rounded_result_is_within_half_an_ulp():
    rng = np.random.default_rng(0)
    golden = np.concatenate([rng.uniform(-4, 4, 500), rng.uniform(-1e-3, 1e-3, 100)])
    actual = golden.astype(ml_dtypes.bfloat16)  # round to nearest

    errors = measure(actual, golden, "bfloat16", policy("rounding", "bfloat16"))

    assert errors.passed
    assert 0.0 < errors.max_ulp <= 0.5


def test_bfloat16_one_ulp_off_is_measured_as_one_ulp():
    golden = _f64(1.0)
    actual = np.array([1.0 + 2.0**-7], dtype=ml_dtypes.bfloat16)  # bfloat16 has 7 mantissa bits

    errors = measure(actual, golden, "bfloat16", policy("exact", "bfloat16"))

    assert errors.max_ulp == pytest.approx(1.0)
    assert errors.max_abs == pytest.approx(2.0**-7)
    assert not errors.passed


def test_float16_inputs_are_measured_in_their_own_ulps():
    golden = _f64(1.0)
    actual = np.array([1.0 + 2.0**-10], np.float16)

    errors = measure(actual, golden, "float16", policy("rounding", "float16"))

    assert errors.max_ulp == pytest.approx(1.0)
    assert errors.passed  # 2u = one ulp


def test_mismatch_ratio_counts_elements():
    golden = np.ones((4, 5))
    actual = np.ones((4, 5), np.float32)
    actual[0, :3] = 2.0

    errors = measure(actual, golden, "float32", ROUNDING32)

    assert errors.mismatch_ratio == pytest.approx(3 / 20)


# --- ulp_of -----------------------------------------------------------------------------------


def test_ulp_of_float32_at_one():
    assert ulp_of(_f64(1.0), "float32")[0] == 2.0**-23


def test_ulp_of_float32_at_zero_is_the_smallest_subnormal():
    ulp = ulp_of(_f64(0.0, -0.0), "float32")

    assert ulp[0] == 2.0**-149
    assert ulp[0] == float(np.finfo(np.float32).smallest_subnormal)
    assert ulp[1] == ulp[0]


def test_ulp_of_follows_the_binade():
    ulp = ulp_of(_f64(1.5, 2.0, -3.0, 0.75), "float32")

    assert list(ulp) == [2.0**-23, 2.0**-22, 2.0**-22, 2.0**-24]


def test_ulp_of_other_dtypes_at_one():
    assert ulp_of(_f64(1.0), "float16")[0] == 2.0**-10
    assert ulp_of(_f64(1.0), "bfloat16")[0] == 2.0**-7
    assert ulp_of(_f64(0.0), "bfloat16")[0] == float(
        ml_dtypes.finfo(ml_dtypes.bfloat16).smallest_subnormal
    )
