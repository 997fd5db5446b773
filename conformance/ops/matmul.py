"""Matrix products: MatMul, Gemm, Einsum and the quantized MatMulInteger."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from xpuport.conformance.spec import FLOATS, Const, OpSpec, Sample, Values, is_float


def draw(v: Values, *shape: int) -> np.ndarray:
    """Floats in [-1, 1]; integers in [-3, 3], so a 256-term dot product stays below 2**12."""
    return v(*shape) if is_float(v.dtype) else v(*shape, low=-3, high=3)


def matmul(v: Values) -> Iterator[Sample]:
    yield Sample("2d_k16", (draw(v, 8, 16), draw(v, 16, 12)), accumulation=16)
    yield Sample("batched_3d_k64_const_weight", (draw(v, 2, 5, 64), Const(draw(v, 64, 7))),
                 accumulation=64)
    yield Sample("broadcast_4d", (draw(v, 2, 1, 4, 32), draw(v, 1, 3, 32, 8)), accumulation=32)
    yield Sample("vector_matrix_k256", (draw(v, 256), draw(v, 256, 6)), accumulation=256)


def gemm(v: Values) -> Iterator[Sample]:
    # A Linear layer as exported: weight [N, K] held transposed, bias [N]; K products + bias.
    yield Sample("linear_transB", (v(4, 64), Const(v(32, 64)), Const(v(32))), {"transB": 1},
                 accumulation=65)
    # alpha, beta powers of two: the scaling adds no rounding of its own.
    yield Sample("transA_alpha_beta_column_bias", (v(16, 6), Const(v(16, 10)), Const(v(6, 1))),
                 {"transA": 1, "alpha": 0.5, "beta": 2.0}, accumulation=17)
    yield Sample("both_transposed_scalar_bias", (v(24, 5), v(3, 24), Const(v(1))),
                 {"transA": 1, "transB": 1}, accumulation=25)
    yield Sample("no_bias", (v(7, 16), v(16, 9)), accumulation=16)


def einsum(v: Values) -> Iterator[Sample]:
    yield Sample("attention_scores", (v(2, 5, 3, 16), v(2, 7, 3, 16)),
                 {"equation": "bmhd,bnhd->bhmn"}, accumulation=16)
    yield Sample("attention_values", (v(2, 3, 5, 7), v(2, 7, 3, 16)),
                 {"equation": "bhmn,bnhd->bmhd"}, accumulation=7)
    yield Sample("matmul_k64", (v(6, 64), v(64, 5)), {"equation": "ij,jk->ik"}, accumulation=64)
    yield Sample("two_axis_contraction", (v(4, 6, 8), v(6, 8, 3)), {"equation": "ijk,jkl->il"},
                 accumulation=48)


def matmul_integer(v: Values) -> Iterator[Sample]:
    """Quantized products, the first two over the full 8-bit range: every |sum| stays below
    64 * 255 * 255 < 2**31."""
    lo, hi = (0, 255) if v.dtype == "uint8" else (-128, 127)
    zero = Const(v(low=lo, high=hi))
    yield Sample("no_zero_points", (v(4, 32, low=lo, high=hi), Const(v(32, 8, low=lo, high=hi))))
    yield Sample("scalar_zero_points",
                 (v(5, 64, low=lo, high=hi), Const(v(64, 6, low=lo, high=hi)), zero, zero))
    # int8 weights with per-column zero points. Their range is 7-bit, as quantizers emit them
    # (reduce_range): onnxruntime's x86 uint8 x int8 kernel sums pairs of products in
    # saturating int16 (VPMADDUBSW) and errs on full-range weights, 255 * 127 * 2 > 2**15.
    weights = v.ints(16, 7, low=-64, high=63, dtype="int8")
    yield Sample("batched_int8_weights_per_column_zero_point",
                 (v(2, 3, 16, low=lo, high=hi), Const(weights), zero,
                  Const(v.ints(7, low=-4, high=4, dtype="int8"))))


SPECS = (
    OpSpec("MatMul", matmul, (*FLOATS, "int32", "int64"), kind="accumulate"),
    OpSpec("Gemm", gemm, FLOATS, kind="accumulate"),
    OpSpec("Einsum", einsum, ("float32", "float16"), kind="accumulate"),  # no bfloat16 in ONNX
    OpSpec("MatMulInteger", matmul_integer, ("uint8", "int8"), kind="exact"),
)
