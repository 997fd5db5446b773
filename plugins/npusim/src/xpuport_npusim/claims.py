"""What the simulated NPU takes, decided per ONNX node from the hardware profile.

Three units: the matrix unit (MatMul, Gemm) takes the profile's `matrix_unit.input_dtypes`
and accumulates in its `accumulator` dtype; the vector unit computes elementwise ops,
softmax, normalization and reductions in float32 and rounds once to the output dtype, and
reduces a row only when it fits the profile's `onchip_buffer_kib`; the data-movement unit
reshapes and transposes any dtype the profile has. Everything else is declined with the
reason, and xpuport runs it on the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import onnx_ir as ir

from xpuport.backends.base import Support
from xpuport.hw_profiles import HardwareProfile

MATRIX_OPS = frozenset({"MatMul", "Gemm"})
ELEMENTWISE_OPS = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Relu", "Gelu", "Sigmoid", "Tanh", "Exp", "Sqrt", "Erf",
    "Neg", "Abs",
})
ROW_OPS = frozenset({"Softmax", "LayerNormalization", "ReduceSum", "ReduceMean", "ReduceMax"})
MOVE_OPS = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Constant"})
# Inputs that say how, not what: they must be constants (initializers) and are not data.
_CONSTANT_INPUTS = {"Reshape": 1, "Squeeze": 1, "Unsqueeze": 1, "ReduceSum": 1,
                    "ReduceMean": 1, "ReduceMax": 1}
VECTOR_DTYPES = ("float32", "float16", "bfloat16")
VECTOR_COMPUTE = "float32"


def claim(node: ir.Node, profile: HardwareProfile) -> Support:
    """Support.yes with the unit that runs `node`, or Support.no with why not."""
    if node.domain not in ("", "ai.onnx"):
        return Support.no(f"npusim has no kernel for domain '{node.domain}'")
    unit = _unit_of(node.op_type)
    if unit is None:
        return Support.no(f"npusim has no kernel for {node.op_type}")
    problem = _shape_problem(node) or _constant_problem(node) or _CHECKS[unit](node, profile)
    return Support.no(problem) if problem else Support.yes(_DESCRIBE[unit](node, profile))


def _unit_of(op: str) -> str | None:
    for unit, ops in (("matrix", MATRIX_OPS), ("vector", ELEMENTWISE_OPS | ROW_OPS),
                      ("move", MOVE_OPS)):
        if op in ops:
            return unit
    return None


def data_inputs(node: ir.Node) -> list[ir.Value]:
    constant_from = _CONSTANT_INPUTS.get(node.op_type, len(node.inputs))
    return [v for v in node.inputs[:constant_from] if v is not None]


def _shape_problem(node: ir.Node) -> str:
    for value in [*data_inputs(node), *(v for v in node.outputs if v.uses() or
                                         v.is_graph_output())]:
        if value.shape is None or not value.shape.is_static():
            return f"npusim compiles static shapes only: '{value.name}' has shape {value.shape}"
        if 0 in value.shape:
            return f"npusim computes non-empty tensors only: '{value.name}' has shape {value.shape}"
    return ""


def _constant_problem(node: ir.Node) -> str:
    first = _CONSTANT_INPUTS.get(node.op_type)
    if first is None:
        return ""
    for value in node.inputs[first:]:
        if value is not None and value.const_value is None:
            return f"npusim needs {node.op_type}'s input '{value.name}' as a constant"
    return ""


def _dtypes(values: list[ir.Value]) -> set[str]:
    return {v.dtype.numpy().name for v in values if v.dtype is not None}


def _check_matrix(node: ir.Node, profile: HardwareProfile) -> str:
    unit = profile.matrix_unit
    if unit is None:
        return f"profile {profile.name} states no matrix unit"
    dtypes = _dtypes(data_inputs(node))
    taken = sorted(dtypes - set(unit.input_dtypes))
    if taken:
        return (f"the matrix unit of {profile.name} takes {', '.join(unit.input_dtypes)}, not "
                f"{', '.join(taken)}: npusim never rounds inputs silently; cast the model")
    if node.op_type == "MatMul" and any(len(v.shape or ()) < 2 for v in data_inputs(node)):
        return "npusim's MatMul needs both inputs of rank 2 or more"
    if node.op_type == "Gemm" and _int(node, "transA", 0):
        return "npusim's Gemm takes transA=0 only"
    return ""


def _check_vector(node: ir.Node, profile: HardwareProfile) -> str:
    dtypes = _dtypes([*data_inputs(node), *node.outputs])
    allowed = set(VECTOR_DTYPES) & set(profile.dtypes)
    if not dtypes <= allowed:
        return (f"the vector unit of {profile.name} computes {', '.join(sorted(allowed))}, "
                f"not {', '.join(sorted(dtypes - allowed))}")
    if node.op_type == "LayerNormalization" and any(
            v.uses() or v.is_graph_output() for v in node.outputs[1:]):
        return "npusim's LayerNormalization does not produce Mean and InvStdDev"
    return _row_problem(node, profile) if node.op_type in ROW_OPS else ""


def _row_problem(node: ir.Node, profile: HardwareProfile) -> str:
    if _int(node, "noop_with_empty_axes", 0) and reduced_axes(node) == []:
        return f"npusim's {node.op_type} takes noop_with_empty_axes=0 only"
    return _buffer_problem(node, profile)


def _buffer_problem(node: ir.Node, profile: HardwareProfile) -> str:
    """A row is reduced whole in the on-chip buffer: input and result rows in float32."""
    if profile.onchip_buffer_kib is None:
        return f"profile {profile.name} states no on-chip buffer size to bound a reduction"
    row = row_length(node)
    needed = 2 * row * 4
    if needed > profile.onchip_buffer_kib * 1024:
        return (f"a row of {row} elements needs {needed / 1024:.0f} KiB of on-chip buffer, "
                f"{profile.name} has {profile.onchip_buffer_kib} KiB")
    return ""


def row_length(node: ir.Node) -> int:
    """How many elements one reduction of `node` reads (its first input's shape is static)."""
    shape = static_shape(node.inputs[0])
    rank = len(shape)
    if node.op_type == "Softmax":
        return shape[_int(node, "axis", -1) % rank] if rank else 1
    if node.op_type == "LayerNormalization":
        return math.prod(shape[_int(node, "axis", -1) % rank:])
    axes = reduced_axes(node)
    return math.prod(shape[a % rank] for a in axes) if axes else math.prod(shape)


def static_shape(value: ir.Value | None) -> list[int]:
    """The dims of a value whose shape _shape_problem found static."""
    dims = list(value.shape or ()) if value is not None else []
    return [d for d in dims if isinstance(d, int)]


def _int(node: ir.Node, name: str, default: int) -> int:
    value = node.attributes.get_int(name)
    return default if value is None else value


def reduced_axes(node: ir.Node) -> list[int]:
    """A Reduce node's axes, from its constant input (opset 18+) or attribute (older)."""
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        constant = node.inputs[1].const_value
        return [int(a) for a in constant.numpy().ravel()] if constant is not None else []
    return list(node.attributes.get_ints("axes", []) or [])


def _check_move(node: ir.Node, profile: HardwareProfile) -> str:
    missing = sorted(_dtypes([*data_inputs(node), *node.outputs]) - set(profile.dtypes))
    if missing:
        return f"dtype {', '.join(missing)} not in profile {profile.name}"
    shape = node.inputs[1].const_value if node.op_type == "Reshape" else None  # type: ignore[union-attr]  # Reshape has two inputs
    if shape is not None and _int(node, "allowzero", 0) and 0 in shape.numpy():
        return "npusim's Reshape keeps no zero-size dim (allowzero=1 with a 0 in the shape)"
    return ""


def _describe_matrix(node: ir.Node, profile: HardwareProfile) -> str:
    unit = profile.matrix_unit
    assert unit is not None, "checked by _check_matrix"
    dtype = sorted(_dtypes(data_inputs(node)))[0]
    tile = "x".join(str(d) for d in unit.shape)
    return f"matrix unit: {dtype} inputs, {unit.accumulator} accumulation, {tile} tiles"


def _describe_vector(node: ir.Node, profile: HardwareProfile) -> str:
    return f"vector unit: computed in {VECTOR_COMPUTE}, rounded once to the output dtype"


def _describe_move(node: ir.Node, profile: HardwareProfile) -> str:
    return "data movement: exact"


_CHECKS: dict[str, Callable[[ir.Node, HardwareProfile], str]] = {
    "matrix": _check_matrix, "vector": _check_vector, "move": _check_move}
_DESCRIBE: dict[str, Callable[[ir.Node, HardwareProfile], str]] = {
    "matrix": _describe_matrix, "vector": _describe_vector, "move": _describe_move}
