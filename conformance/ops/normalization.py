"""Normalizations: batch (inference), layer, instance, group, LRN, Lp and mean-variance.

The accumulation length of a normalization is the normalized size: its mean and variance
are sums of that many terms, whose error dominates the few rounded operations after them.
"""

from __future__ import annotations

from collections.abc import Iterator

from onnx import NodeProto, helper

from xpuport.conformance.spec import FLOATS, Const, OpSpec, Sample, Values

HALF_SINGLE = ("float32", "float16")  # ONNX allows no bfloat16 for these


def batch_norm(v: Values) -> Iterator[Sample]:
    """Inference mode, statistics as initializers. Nothing is summed, but the statistics fold
    into x * s + b through 4 rounded operations (add eps, sqrt, divide, multiply-subtract):
    accumulation 4 stands for those."""
    for name, shape in (("nchw", (2, 4, 5, 5)), ("nc", (6, 4))):
        channels = shape[1]
        stats = (Const(v(channels)), Const(v(channels)), Const(v(channels)),
                 Const(v.positive(channels, high=2.0)))
        yield Sample(name, (v(*shape, low=-2, high=2), *stats), {"epsilon": 1e-3},
                     accumulation=4)


def layer_norm(v: Values) -> Iterator[Sample]:
    yield Sample("axis_last", (v(4, 6, 32), Const(v(32)), Const(v(32))), accumulation=32)
    yield Sample("axis_minus2_eps", (v(2, 8, 16), Const(v(8, 16)), Const(v(8, 16))),
                 {"axis": -2, "epsilon": 1e-3}, accumulation=128)
    yield Sample("no_bias", (v(3, 64), Const(v(64))), accumulation=64)


def instance_norm(v: Values) -> Iterator[Sample]:
    yield Sample("2d", (v(2, 3, 6, 6), Const(v(3)), Const(v(3))), accumulation=36)
    yield Sample("1d_eps", (v(1, 4, 25), Const(v(4)), Const(v(4))), {"epsilon": 1e-3},
                 accumulation=25)


def group_norm(v: Values) -> Iterator[Sample]:
    # opset 21: scale and bias per channel (the checker rejects the deprecated version 18)
    yield Sample("4_groups", (v(2, 8, 4, 4), Const(v(8)), Const(v(8))), {"num_groups": 4},
                 accumulation=32)
    yield Sample("1_group_eps", (v(1, 6, 10), Const(v(6)), Const(v(6))),
                 {"num_groups": 1, "epsilon": 1e-3}, accumulation=60)


def group_norm_nodes(inputs: list[str], outputs: list[str], sample: Sample) -> list[NodeProto]:
    """GroupNormalization, then no-ops that restate its input's type and shape: ONNX infers
    neither for this function op, and a case needs a typed output."""
    return [
        helper.make_node("GroupNormalization", inputs, ["normalized"], **sample.attributes),
        helper.make_node("CastLike", ["normalized", inputs[0]], ["typed"]),
        helper.make_node("Shape", [inputs[0]], ["shape"]),
        helper.make_node("Reshape", ["typed", "shape"], outputs),
    ]


def lrn(v: Values) -> Iterator[Sample]:
    """x / (bias + alpha / size * sum x^2) ** beta over `size` neighbouring channels: the
    power dominates a sum of 3 or 5 squares, hence kind transcendental. Batch = channels:
    onnx 1.23's reference LRN loops over the batch size where it means the channels."""
    yield Sample("size3", (v(4, 4, 3, 3, low=-2, high=2),), {"size": 3, "alpha": 0.1})
    yield Sample("size5_defaults", (v(6, 6, 2, 2),), {"size": 5})


def lp_norm(v: Values) -> Iterator[Sample]:
    yield Sample("p2_last_axis", (v(4, 3, 24),), accumulation=24)
    # positive: onnx 1.23's reference sums x ** p, not |x| ** p, wrong for odd p and x < 0
    yield Sample("p1_axis1", (v.positive(2, 16, 5),), {"axis": 1, "p": 1}, accumulation=16)


def mvn(v: Values) -> Iterator[Sample]:
    # the default axes, spelled out: onnx 1.23's inference of the function body fails on an
    # omitted `axes` (its Constant node gets no value)
    yield Sample("axes_0_2_3", (v(2, 3, 4, 5),), {"axes": [0, 2, 3]}, accumulation=40)
    yield Sample("axes_2_3", (v(2, 3, 6, 6),), {"axes": [2, 3]}, accumulation=36)


SPECS = (
    OpSpec("BatchNormalization", batch_norm, FLOATS, kind="accumulate"),
    OpSpec("LayerNormalization", layer_norm, FLOATS, kind="accumulate"),
    OpSpec("InstanceNormalization", instance_norm, HALF_SINGLE, kind="accumulate"),
    OpSpec("GroupNormalization", group_norm, FLOATS, kind="accumulate", opset=21,
           nodes=group_norm_nodes),
    OpSpec("LRN", lrn, FLOATS, kind="transcendental"),
    # x / ||x||_p: the norm's sum dominates its square root and the division
    OpSpec("LpNormalization", lp_norm, HALF_SINGLE, kind="accumulate"),
    # ONNX defines MVN by a function whose epsilon is a float32 Constant: the body is ill-typed
    # (Add of float16 and float) in any other dtype, float64 included, so the golden is
    # evaluated in float32 (numpy's pairwise sums: a few u, well inside the policy).
    OpSpec("MeanVarianceNormalization", mvn, ("float32",), kind="accumulate", golden="native"),
)
