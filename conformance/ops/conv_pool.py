"""Convolutions, pooling, and the spatial rearrangements (DepthToSpace, SpaceToDepth, Resize).

Shapes are small: the reference evaluator's Conv, the golden, is pure Python.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from xpuport.conformance.spec import FLOATS, Const, OpSpec, Sample, Values

HALF_SINGLE = ("float32", "float16")  # ONNX allows no bfloat16 for Conv and the pools


def conv(v: Values) -> Iterator[Sample]:
    # accumulation: C / group * kernel products, plus the bias
    yield Sample("1d_pads", (v(1, 4, 16), Const(v(6, 4, 3))), {"pads": [1, 1]}, accumulation=12)
    yield Sample("2d_pads_strides_dilations_bias",
                 (v(1, 3, 10, 10), Const(v(8, 3, 3, 3)), Const(v(8))),
                 {"pads": [1, 2, 1, 0], "strides": [2, 1], "dilations": [1, 2]}, accumulation=28)
    yield Sample("grouped", (v(2, 8, 6, 6), Const(v(6, 4, 3, 3))), {"group": 2}, accumulation=36)
    yield Sample("depthwise_bias", (v(1, 6, 7, 7), Const(v(6, 1, 3, 3)), Const(v(6))),
                 {"group": 6, "pads": [1, 1, 1, 1]}, accumulation=10)


def conv_transpose(v: Values) -> Iterator[Sample]:
    # With stride 2 and a 3-tap kernel, an output sums at most 2 taps per axis per input
    # channel: 4 channels * 2 * 2 products, plus the bias.
    yield Sample("2d_stride2_output_padding_bias",
                 (v(1, 4, 5, 5), Const(v(4, 3, 3, 3)), Const(v(3))),
                 {"strides": [2, 2], "output_padding": [1, 1]}, accumulation=17)
    yield Sample("2d_stride2_pads", (v(1, 4, 4, 6), Const(v(4, 2, 3, 3))),
                 {"strides": [2, 2], "pads": [1, 1, 1, 1]}, accumulation=16)


def max_pool(v: Values) -> Iterator[Sample]:
    yield Sample("3x3_stride2_pads", (v(1, 3, 9, 9),),
                 {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    yield Sample("ceil_mode", (v(1, 2, 8, 8),),
                 {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1})
    yield Sample("1d_dilated", (v(2, 3, 12),), {"kernel_shape": [2], "dilations": [3]})


def average_pool(v: Values) -> Iterator[Sample]:
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    yield Sample("count_include_pad_0", (v(1, 3, 9, 9),), attrs, accumulation=9)
    yield Sample("count_include_pad_1", (v(1, 3, 9, 9),), {**attrs, "count_include_pad": 1},
                 accumulation=9)
    yield Sample("2x2_ceil_mode", (v(2, 2, 7, 7),),
                 {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, accumulation=4)


def global_average_pool(v: Values) -> Iterator[Sample]:
    yield Sample("2d", (v(2, 3, 8, 8),), accumulation=64)
    yield Sample("1d", (v(1, 4, 20),), accumulation=20)


def global_max_pool(v: Values) -> Iterator[Sample]:
    # 2D only: onnx 1.23's reference GlobalMaxPool reduces axes (d, d + 1) for d spatial
    # dimensions, which is right only for d = 2 (a 1D input loses its channel axis).
    yield Sample("2d", (v(2, 3, 8, 8),))
    yield Sample("2d_non_square", (v(1, 5, 3, 7),))


def lp_pool(v: Values) -> Iterator[Sample]:
    yield Sample("p2_2x2", (v(1, 3, 8, 8),), {"kernel_shape": [2, 2], "strides": [2, 2]},
                 accumulation=4)
    yield Sample("p1_3x3_pads", (v(1, 2, 7, 7),),
                 {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "p": 1}, accumulation=9)


def depth_to_space(v: Values) -> Iterator[Sample]:
    yield Sample("dcr", (v(1, 8, 3, 4),), {"blocksize": 2})
    yield Sample("crd", (v(2, 12, 2, 3),), {"blocksize": 2, "mode": "CRD"})


def space_to_depth(v: Values) -> Iterator[Sample]:
    yield Sample("blocksize2", (v(1, 3, 6, 4),), {"blocksize": 2})
    yield Sample("blocksize3", (v(2, 2, 6, 9),), {"blocksize": 3})


def resize(v: Values) -> Iterator[Sample]:
    """Upsampling by scales, as exported from PyTorch's nn.Upsample / F.interpolate; linear
    interpolation weighs 4 neighbours (2 per axis)."""
    up2 = Const(np.array([1, 1, 2, 2], dtype=np.float32))
    yield Sample("nearest_asymmetric_floor", (v(1, 3, 5, 6), None, up2),
                 {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                  "nearest_mode": "floor"})
    yield Sample("linear_half_pixel", (v(1, 2, 5, 6), None, up2), {"mode": "linear"},
                 accumulation=4)
    yield Sample("linear_align_corners", (v(2, 2, 4, 5), None,
                                          Const(np.array([1, 1, 1.5, 2], dtype=np.float32))),
                 {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
                 accumulation=4)


SPECS = (
    OpSpec("Conv", conv, HALF_SINGLE, kind="accumulate"),
    OpSpec("ConvTranspose", conv_transpose, HALF_SINGLE, kind="accumulate"),
    OpSpec("MaxPool", max_pool, HALF_SINGLE, kind="exact"),
    OpSpec("AveragePool", average_pool, HALF_SINGLE, kind="accumulate"),
    OpSpec("GlobalAveragePool", global_average_pool, HALF_SINGLE, kind="accumulate"),
    OpSpec("GlobalMaxPool", global_max_pool, HALF_SINGLE, kind="exact"),
    # (sum |x|^p)^(1/p): the sum dominates; the root's own error shrinks by 1/p.
    OpSpec("LpPool", lp_pool, HALF_SINGLE, kind="accumulate"),
    OpSpec("DepthToSpace", depth_to_space, (*FLOATS, "int32"), kind="exact"),
    OpSpec("SpaceToDepth", space_to_depth, (*FLOATS, "int32"), kind="exact"),
    # nearest is exact data movement; linear is a 4-term weighted sum (accumulation 4)
    OpSpec("Resize", resize, FLOATS, kind="accumulate"),
)
