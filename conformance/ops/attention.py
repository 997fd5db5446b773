"""Transformer blocks as exporters decompose them into standard ONNX ops.

Each spec is a composition (OpSpec.nodes): attention, RMSNorm, LayerNorm, tanh-GELU, rotary
embedding and SwiGLU, built from x0.. to y0.. as torch exports them. Weights, masks and
rotary tables are initializers; scalar constants are Constant nodes in the case's dtype. The
golden runs the same graph in float64; the tolerance is that of the dominant reduction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from xpuport.conformance.spec import FLOATS, Const, OpSpec, Sample, Values, finfo

INT64_MAX = int(np.iinfo(np.int64).max)


node = helper.make_node


def constant(name: str, value: Any, sample: Sample, dtype: Any = None) -> onnx.NodeProto:
    """A Constant node in the dtype of the sample's first input (or in `dtype`)."""
    first = sample.inputs[0]
    assert isinstance(first, np.ndarray), "a composition's first input is its runtime data"
    array = np.asarray(value).astype(dtype or first.dtype)
    return node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def sdpa(inputs: list[str], outputs: list[str], sample: Sample) -> list[onnx.NodeProto]:
    """softmax(Q Kᵀ / sqrt(d) + mask) V, the mask optional (a fourth input)."""
    q, k, v, *mask = inputs
    head_dim = np.asarray(sample.inputs[0]).shape[-1]
    nodes = [
        node("Transpose", [k], ["k_t"], perm=[0, 1, 3, 2]),
        node("MatMul", [q, "k_t"], ["qk"]),
        constant("scale", 1 / math.sqrt(head_dim), sample),
        node("Mul", ["qk", "scale"], ["scores"]),
    ]
    if mask:
        nodes.append(node("Add", ["scores", mask[0]], ["masked"]))
    nodes.append(node("Softmax", [nodes[-1].output[0]], ["probs"], axis=-1))
    return [*nodes, node("MatMul", ["probs", v], outputs)]


def sdpa_samples(v: Values) -> Iterator[Sample]:
    lowest = finfo(v.dtype).min  # the additive mask value of HF transformers exports
    yield Sample("no_mask", (v(1, 2, 8, 16), v(1, 2, 8, 16), v(1, 2, 8, 16)), accumulation=16)
    causal = v.cast(np.triu(np.full((16, 16), lowest), k=1))
    yield Sample("causal_mask", (v(2, 2, 16, 16), v(2, 2, 16, 16), v(2, 2, 16, 16),
                                 Const(causal)), accumulation=16)
    padding = np.zeros((2, 1, 1, 12))
    padding[1, ..., 9:] = lowest  # the second sequence is 9 tokens long
    yield Sample("runtime_padding_mask_cross", (v(2, 2, 8, 16), v(2, 2, 12, 16),
                                                v(2, 2, 12, 16), v.cast(padding)),
                 accumulation=16)


def norm_constants(eps: float, sample: Sample) -> list[onnx.NodeProto]:
    return [constant("two", 2.0, sample), constant("axes", [-1], sample, np.int64),
            constant("eps", eps, sample)]


def normalize(centered: str, weight: str, output: str) -> list[onnx.NodeProto]:
    """centered / sqrt(mean(centered²) + eps) * weight, over the last axis."""
    return [
        node("Pow", [centered, "two"], ["square"]),
        node("ReduceMean", ["square", "axes"], ["mean_square"]),
        node("Add", ["mean_square", "eps"], ["shifted"]),
        node("Sqrt", ["shifted"], ["root"]),
        node("Div", [centered, "root"], ["normed"]),
        node("Mul", ["normed", weight], [output]),
    ]


def rms_norm(inputs: list[str], outputs: list[str], sample: Sample) -> list[onnx.NodeProto]:
    x, weight = inputs
    return [*norm_constants(1e-6, sample), *normalize(x, weight, outputs[0])]


def layer_norm(inputs: list[str], outputs: list[str], sample: Sample) -> list[onnx.NodeProto]:
    x, gamma, beta = inputs
    return [
        *norm_constants(1e-5, sample),
        node("ReduceMean", [x, "axes"], ["mean"]),
        node("Sub", [x, "mean"], ["centered"]),
        *normalize("centered", gamma, "scaled"),
        node("Add", ["scaled", beta], outputs),
    ]


def norm_samples(v: Values, bias: bool) -> Iterator[Sample]:
    """x, then a Const weight (RMSNorm) and bias (LayerNorm); one sample centred, one offset."""
    for name, shape, low, high in (("hidden64", (2, 8, 64), -1.0, 1.0),
                                   ("hidden128_offset", (1, 4, 128), 0.5, 2.5)):
        hidden = shape[-1]
        params = [Const(v(hidden, low=0.5, high=1.5))]
        params += [Const(v(hidden, low=-0.5, high=0.5))] if bias else []
        yield Sample(name, (v(*shape, low=low, high=high), *params), accumulation=hidden)


def rms_samples(v: Values) -> Iterator[Sample]:
    return norm_samples(v, bias=False)


def layer_norm_samples(v: Values) -> Iterator[Sample]:
    return norm_samples(v, bias=True)


def gelu_tanh(inputs: list[str], outputs: list[str], sample: Sample) -> list[onnx.NodeProto]:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³))), in torch's opset-9 export order."""
    (x,) = inputs
    return [
        constant("kappa", 0.044715, sample),
        constant("beta", math.sqrt(2 / math.pi), sample),
        constant("one", 1.0, sample),
        constant("half", 0.5, sample),
        node("Mul", [x, x], ["square"]),
        node("Mul", [x, "square"], ["cube"]),
        node("Mul", ["kappa", "cube"], ["cubic_term"]),
        node("Add", [x, "cubic_term"], ["inner"]),
        node("Mul", ["beta", "inner"], ["scaled"]),
        node("Tanh", ["scaled"], ["tanh"]),
        node("Add", ["one", "tanh"], ["one_plus"]),
        node("Mul", [x, "one_plus"], ["product"]),
        node("Mul", ["half", "product"], outputs),
    ]


def gelu_samples(v: Values) -> Iterator[Sample]:
    yield Sample("hidden", (v(2, 8, 32, low=-4, high=4),))
    yield Sample("saturating", (v(4, 16, low=-10, high=10),))


def rotary(inputs: list[str], outputs: list[str], sample: Sample) -> list[onnx.NodeProto]:
    """x cos + rotate_half(x) sin, rotate_half(x) = concat(-x2, x1) of x's two halves."""
    x, cos, sin = inputs
    half = np.asarray(sample.inputs[0]).shape[-1] // 2
    return [
        constant("zero", [0], sample, np.int64),
        constant("half", [half], sample, np.int64),
        constant("end", [INT64_MAX], sample, np.int64),
        constant("last", [-1], sample, np.int64),
        node("Slice", [x, "zero", "half", "last"], ["first_half"]),
        node("Slice", [x, "half", "end", "last"], ["second_half"]),
        node("Neg", ["second_half"], ["minus_second"]),
        node("Concat", ["minus_second", "first_half"], ["rotated"], axis=-1),
        node("Mul", [x, cos], ["x_cos"]),
        node("Mul", ["rotated", sin], ["rotated_sin"]),
        node("Add", ["x_cos", "rotated_sin"], outputs),
    ]


def rotary_samples(v: Values) -> Iterator[Sample]:
    for name, shape in (("heads", (1, 2, 8, 16)), ("batch2_seq16", (2, 2, 16, 16))):
        seq, dim = shape[-2:]
        inv_freq = 10000.0 ** (-np.arange(0, dim, 2) / dim)
        angles = np.outer(np.arange(seq), inv_freq)
        angles = np.concatenate([angles, angles], axis=-1)
        tables = Const(v.cast(np.cos(angles))), Const(v.cast(np.sin(angles)))
        # two products summed per element
        yield Sample(name, (v(*shape), *tables), accumulation=2)


def swiglu(inputs: list[str], outputs: list[str], sample: Sample) -> list[onnx.NodeProto]:
    """down(silu(gate(x)) * up(x)), silu(g) = g * sigmoid(g): a Llama MLP."""
    x, w_gate, w_up, w_down = inputs
    return [
        node("MatMul", [x, w_gate], ["gate"]),
        node("Sigmoid", ["gate"], ["sigmoid"]),
        node("Mul", ["gate", "sigmoid"], ["silu"]),
        node("MatMul", [x, w_up], ["up"]),
        node("Mul", ["silu", "up"], ["hidden"]),
        node("MatMul", ["hidden", w_down], outputs),
    ]


def swiglu_samples(v: Values) -> Iterator[Sample]:
    for name, shape in (("tokens8", (1, 8, 32)), ("batch2", (2, 4, 32))):
        weights = (Const(v(32, 64, low=-0.3, high=0.3)), Const(v(32, 64, low=-0.3, high=0.3)),
                   Const(v(64, 32, low=-0.25, high=0.25)))
        yield Sample(name, (v(*shape), *weights), accumulation=64)  # the down projection


SPECS = (
    OpSpec("ScaledDotProductAttention", sdpa_samples, FLOATS, kind="accumulate", nodes=sdpa),
    OpSpec("RMSNorm", rms_samples, FLOATS, kind="accumulate", nodes=rms_norm),
    OpSpec("LayerNormDecomposed", layer_norm_samples, FLOATS, kind="accumulate",
           nodes=layer_norm),
    # no reduction: the error is the tanh's and that of the eight roundings around it
    OpSpec("GeluTanh", gelu_samples, FLOATS, kind="transcendental", nodes=gelu_tanh),
    OpSpec("RotaryEmbeddingDecomposed", rotary_samples, FLOATS, kind="accumulate", nodes=rotary),
    OpSpec("SwiGLU", swiglu_samples, FLOATS, kind="accumulate", nodes=swiglu),
)
