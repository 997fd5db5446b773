"""xpuport's own decompositions: ONNX ops that have no function body and no TVM converter, or
whose converter fails or computes wrong in some types, rewritten as ONNX ops TVM gets right.
A rule returns the replacement nodes, or None when it does not apply to this node (a dynamic
shape, a non-constant axis, another dtype); it names its inner values under the node's name
(`local`), so they never meet a name of the graph. Every rule is exact up to the rounding of
the ops it uses (a float16/bfloat16 result computed in float32 is rounded once), and each is
checked against onnxruntime, or ONNX's reference evaluator, in the unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import partial

import numpy as np
import onnx
from onnx import NodeProto, helper, numpy_helper


class GraphView:
    """What a rule may read of the graph around a node: static shapes, dtypes, constants."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.types = {v.name: v.type for v in [*graph.input, *graph.value_info, *graph.output]}
        for init in graph.initializer:
            self.types.setdefault(init.name, helper.make_tensor_type_proto(init.data_type,
                                                                           list(init.dims)))
        self.constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}

    def shape(self, name: str) -> list[int] | None:
        found = self.types.get(name)
        if found is None or not found.tensor_type.HasField("shape"):
            return None
        dims = [d.dim_value if d.HasField("dim_value") else -1
                for d in found.tensor_type.shape.dim]
        return dims if all(d >= 0 for d in dims) else None

    def dtype(self, name: str) -> int:
        found = self.types.get(name)
        return int(found.tensor_type.elem_type) if found is not None else 0


Rule = Callable[[NodeProto, GraphView], list[NodeProto] | None]


def _attribute(node: NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(helper.get_attribute_value(attribute))
    return default


def local(node: NodeProto, name: str) -> str:
    return f"{node.name}/{name}"


def _constant(name: str, value: np.ndarray) -> NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def lp_normalization(node: NodeProto, graph: GraphView) -> list[NodeProto] | None:
    """x / ||x||_p along `axis` (p = 1 or 2), as the spec defines it (no epsilon)."""
    v = partial(local, node)
    p, axis = _attribute(node, "p", 2), _attribute(node, "axis", -1)
    if p not in (1, 2):
        return None
    return [_constant(v("axes"), np.array([axis], np.int64)),
            helper.make_node("ReduceL1" if p == 1 else "ReduceL2", [node.input[0], v("axes")],
                             [v("norm")], keepdims=1),
            helper.make_node("Div", [node.input[0], v("norm")], [node.output[0]])]


def cum_prod(node: NodeProto, graph: GraphView) -> list[NodeProto] | None:
    """out[j] = product of x[k] over the k a triangular mask keeps (exclusive and reverse move
    the diagonal and flip it): Where(mask, x, 1) then ReduceProd, multiplied in order of k."""
    v = partial(local, node)
    shape = graph.shape(node.input[0])
    if shape is None or not shape:
        return None
    axis_value = graph.constants.get(node.input[1])
    if axis_value is None and len(shape) != 1:
        return None  # the axis is computed at run time and the rank leaves a choice
    axis = int(axis_value) % len(shape) if axis_value is not None else 0
    size = shape[axis]
    source, target = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    exclusive, reverse = _attribute(node, "exclusive", 0), _attribute(node, "reverse", 0)
    keep = (source >= target if reverse else source <= target) & ~(
        (source == target) if exclusive else np.zeros_like(source, bool))
    mask_shape = [1] * (len(shape) + 1)
    mask_shape[axis], mask_shape[axis + 1] = size, size
    one = np.ones((), helper.tensor_dtype_to_np_dtype(graph.dtype(node.input[0])))
    return [_constant(v("mask"), keep.reshape(mask_shape)),
            _constant(v("one"), one),
            _constant(v("at"), np.array([axis + 1], np.int64)),
            _constant(v("over"), np.array([axis], np.int64)),
            helper.make_node("Unsqueeze", [node.input[0], v("at")], [v("spread")]),
            helper.make_node("Where", [v("mask"), v("spread"), v("one")], [v("kept")]),
            helper.make_node("ReduceProd", [v("kept"), v("over")], [node.output[0]], keepdims=0)]


def reverse_sequence(node: NodeProto, graph: GraphView) -> list[NodeProto] | None:
    """GatherElements along the time axis with idx[b, t] = t < len[b] ? len[b] - 1 - t : t."""
    v = partial(local, node)
    shape = graph.shape(node.input[0])
    if shape is None or len(shape) < 2:
        return None
    batch_axis, time_axis = _attribute(node, "batch_axis", 1), _attribute(node, "time_axis", 0)
    steps = np.arange(shape[time_axis], dtype=np.int64)
    # lens and steps laid out on the (batch, time) plane in the order the axes have in x
    lens_axis = [1] if batch_axis == 0 else [0]
    steps_shape = [1, -1] if time_axis == 1 else [-1, 1]
    plane = [shape[0], shape[1]]
    return [_constant(v("lens_axis"), np.array(lens_axis, np.int64)),
            _constant(v("steps"), steps.reshape(steps_shape)),
            _constant(v("one"), np.array(1, np.int64)),
            _constant(v("plane"), np.array(plane + [1] * (len(shape) - 2), np.int64)),
            _constant(v("full"), np.array(shape, np.int64)),
            helper.make_node("Cast", [node.input[1]], [v("lens64")], to=onnx.TensorProto.INT64),
            helper.make_node("Unsqueeze", [v("lens64"), v("lens_axis")], [v("lens")]),
            helper.make_node("Sub", [v("lens"), v("one")], [v("last")]),
            helper.make_node("Sub", [v("last"), v("steps")], [v("reversed")]),
            helper.make_node("Less", [v("steps"), v("lens")], [v("inside")]),
            helper.make_node("Where", [v("inside"), v("reversed"), v("steps")], [v("index")]),
            helper.make_node("Reshape", [v("index"), v("plane")], [v("index_plane")]),
            helper.make_node("Expand", [v("index_plane"), v("full")], [v("indices")]),
            helper.make_node("GatherElements", [node.input[0], v("indices")], [node.output[0]],
                             axis=time_axis)]


def is_inf(node: NodeProto, graph: GraphView) -> list[NodeProto] | None:
    """IsInf(x) and x > 0 (or x < 0); neither sign: x < x, false everywhere, nan included."""
    v = partial(local, node)
    positive, negative = (_attribute(node, "detect_positive", 1),
                          _attribute(node, "detect_negative", 1))
    x, out = node.input[0], node.output[0]
    if positive and negative:
        return None  # both signs: IsInf as it is (declined for its dtype, not its signs)
    if not positive and not negative:
        return [helper.make_node("Less", [x, x], [out])]
    zero = np.zeros((), helper.tensor_dtype_to_np_dtype(graph.dtype(x)))
    return [_constant(v("zero"), zero),
            helper.make_node("IsInf", [x], [v("infinite")]),
            helper.make_node("Greater" if positive else "Less", [x, v("zero")], [v("signed")]),
            helper.make_node("And", [v("infinite"), v("signed")], [out])]


def one_hot(node: NodeProto, graph: GraphView) -> list[NodeProto] | None:
    """OneHot with its (constant) values widened to float64 or int64, then cast back: the
    widening is exact, and TVM's OneHot returns those dtypes right."""
    v = partial(local, node)
    values = graph.constants.get(node.input[2])
    dtype = graph.dtype(node.input[2])
    if values is None or not dtype:
        return None
    wide = values.astype(np.float64 if np.issubdtype(values.dtype, np.floating) else np.int64)
    axis = _attribute(node, "axis", -1)
    return [_constant(v("values"), wide),
            helper.make_node("OneHot", [node.input[0], node.input[1], v("values")],
                             [v("wide")], axis=axis),
            helper.make_node("Cast", [v("wide")], [node.output[0]], to=dtype)]


def computed_in(node: NodeProto, graph: GraphView, narrow: Collection[int],
                wide: int) -> list[NodeProto] | None:
    """The node on `wide` values: each input of a `narrow` type cast up (exactly), each output
    of a `narrow` type cast back once; other inputs and outputs (axes, indices, bools) as they
    are. None where an output's type is unknown."""
    v = partial(local, node)
    out_types = [graph.dtype(name) for name in node.output]
    if not all(out_types):
        return None
    cast_in = [bool(name) and graph.dtype(name) in narrow for name in node.input]
    inner = helper.make_node(
        node.op_type, [v(f"in{i}") if up else name
                       for i, (name, up) in enumerate(zip(node.input, cast_in, strict=True))],
        [v(f"out{k}") if t in narrow else name
         for k, (name, t) in enumerate(zip(node.output, out_types, strict=True))])
    inner.attribute.extend(node.attribute)
    return [*(helper.make_node("Cast", [name], [v(f"in{i}")], to=wide)
              for i, (name, up) in enumerate(zip(node.input, cast_in, strict=True)) if up),
            inner,
            *(helper.make_node("Cast", [v(f"out{k}")], [name], to=t)
              for k, (name, t) in enumerate(zip(node.output, out_types, strict=True))
              if t in narrow)]


_HALF = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


def has_half_values(node: NodeProto, graph: GraphView) -> bool:
    return any(graph.dtype(name) in _HALF for name in [*node.input, *node.output] if name)


def in_float32(node: NodeProto, graph: GraphView) -> list[NodeProto] | None:
    """The node on float32, its float16/bfloat16 results rounded once (at least as exact as
    computing in half)."""
    return computed_in(node, graph, _HALF, onnx.TensorProto.FLOAT)


def power(node: NodeProto, graph: GraphView) -> list[NodeProto] | None:
    """Base and exponent in float64 and the result cast back to the base's type: exact for
    integers below 2**53, one rounding for floats, whatever the exponent's type."""
    double = onnx.TensorProto.DOUBLE
    types = {graph.dtype(node.input[0]), graph.dtype(node.input[1])} - {double}
    return None if 0 in types else computed_in(node, graph, types, double)


def bool_equal(node: NodeProto, graph: GraphView) -> list[NodeProto] | None:
    """a == b on bools: not (a xor b)."""
    if graph.dtype(node.input[0]) != onnx.TensorProto.BOOL:
        return None
    v = partial(local, node)
    return [helper.make_node("Xor", list(node.input), [v("differ")]),
            helper.make_node("Not", [v("differ")], [node.output[0]])]


def hyperbolic(node: NodeProto, graph: GraphView) -> list[NodeProto] | None:
    """cosh = (e^x + e^-x) / 2 and sinh = (e^x - e^-x) / 2 in float64, sinh as x + x^3/6 below
    |x| = 1e-4 (where the difference would cancel), cast back once to the input's type."""
    v = partial(local, node)
    dtype = graph.dtype(node.input[0])
    if not dtype:
        return None
    double = onnx.TensorProto.DOUBLE
    nodes = [helper.make_node("Cast", [node.input[0]], [v("x")], to=double),
             _constant(v("half"), np.array(0.5)),
             helper.make_node("Exp", [v("x")], [v("up")]),
             helper.make_node("Neg", [v("x")], [v("minus_x")]),
             helper.make_node("Exp", [v("minus_x")], [v("down")])]
    if node.op_type == "Cosh":
        return [*nodes, helper.make_node("Add", [v("up"), v("down")], [v("sum")]),
                helper.make_node("Mul", [v("sum"), v("half")], [v("wide")]),
                helper.make_node("Cast", [v("wide")], [node.output[0]], to=dtype)]
    return [*nodes, _constant(v("sixth"), np.array(1 / 6)),
            _constant(v("small"), np.array(1e-4)),
            helper.make_node("Sub", [v("up"), v("down")], [v("difference")]),
            helper.make_node("Mul", [v("difference"), v("half")], [v("large_x")]),
            helper.make_node("Mul", [v("x"), v("x")], [v("square")]),
            helper.make_node("Mul", [v("square"), v("sixth")], [v("cube_term")]),
            helper.make_node("Mul", [v("cube_term"), v("x")], [v("cube")]),
            helper.make_node("Add", [v("x"), v("cube")], [v("small_x")]),
            helper.make_node("Abs", [v("x")], [v("size")]),
            helper.make_node("Less", [v("size"), v("small")], [v("is_small")]),
            helper.make_node("Where", [v("is_small"), v("small_x"), v("large_x")], [v("wide")]),
            helper.make_node("Cast", [v("wide")], [node.output[0]], to=dtype)]


RULES: dict[str, Rule] = {
    "LpNormalization": lp_normalization,
    "CumProd": cum_prod,
    "ReverseSequence": reverse_sequence,
    "IsInf": is_inf,
    "OneHot": one_hot,
    # int32 means, in int64
    "ReduceMean": partial(computed_in, narrow=(onnx.TensorProto.INT32,),
                          wide=onnx.TensorProto.INT64),
    "Pow": power,
    "Equal": bool_equal,
    "Sinh": hyperbolic,
    "Cosh": hyperbolic,
}
