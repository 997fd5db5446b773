"""What TVM 0.27's ONNX importer can take, node by node: shared by every backend that lowers
through it. A node it cannot convert, converts wrongly, or converts only with a constant in
place of an input, is declined with the reason, so that xpuport decomposes it or runs it on
the host instead of failing at import or computing a wrong result. Each entry below was
measured on the official ONNX node tests (see the README's coverage section).
"""

from __future__ import annotations

from functools import cache

import onnx_ir as ir
from tvm.relax.frontend.onnx import onnx_frontend

from xpuport.backends.base import Support, node_dtypes
from xpuport.hw_profiles import HardwareProfile

_REDUCES = ("ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean", "ReduceProd",
            "ReduceLogSumExp", "ReduceLogSum", "ReduceSumSquare", "ReduceL1", "ReduceL2")
# Inputs the importer must see as constants or shape computations it tracks (it asserts, or
# raises "Dynamic ... not supported"); a graph input there is a run-time value it cannot see.
CONSTANT_INPUTS: dict[str, dict[int, str]] = {
    **{op: {1: "axes"} for op in _REDUCES},
    "CumSum": {1: "axis"},
    "Split": {1: "split"},
    "Pad": {1: "pads", 3: "axes"},
    "Tile": {1: "repeats"},
    "OneHot": {1: "depth", 2: "values"},
    "Reshape": {1: "shape"},
    "Resize": {2: "scales", 3: "sizes"},
}


# Ops TVM 0.27 fails to import or build, or types wrong, in a half-precision type and gets
# right in float32 (measured: the ops suite on llvm; cuda failed the same ones on the H200);
# lowering computes them in float32 instead. Not here: Sinh and Cosh, which llvm builds in no
# float type (cuda: backends/cuda.py), and bfloat16 Expand, whose casts fail the same way.
FAILS_IN: dict[str, frozenset[str]] = {
    "float16": frozenset({"Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "LRN", "Selu",
                          "ThresholdedRelu", "BatchNormalization"}),
    "bfloat16": frozenset({"ArgMax", "ArgMin", "Hardmax", "Clip", "LRN", "PRelu", "Pow", "Mod",
                           "QuantizeLinear", "DequantizeLinear", "IsInf", "IsNaN",
                           "BatchNormalization"}),
}


@cache
def importable_ops() -> frozenset[str]:
    """Ops of the default ONNX domain that TVM's importer has a converter for."""
    # _get_convert_map is the importer's own table; no public accessor exists in TVM 0.27.
    return frozenset(onnx_frontend._get_convert_map())


def importer_support(node: ir.Node) -> Support:
    """Whether TVM's ONNX importer converts `node` correctly."""
    if node.domain not in ("", "ai.onnx"):
        return Support.no(f"op domain '{node.domain}' has no TVM converter")
    if node.op_type not in importable_ops():
        return Support.no(f"TVM's ONNX importer has no converter for {node.op_type}")
    defect = _known_defect(node)
    if defect:
        return Support.no(f"TVM's {node.op_type} converter {defect}")
    for index, name in CONSTANT_INPUTS.get(node.op_type, {}).items():
        value = node.inputs[index] if index < len(node.inputs) else None
        if value is not None and value.const_value is None and value.is_graph_input():
            return Support.no(f"TVM's ONNX importer needs {node.op_type}'s '{name}' input as "
                              "a constant or a shape computation, not a graph input")
    return Support.yes()


def _known_defect(node: ir.Node) -> str:
    op = node.op_type
    if op == "Attention":
        return "is the com.microsoft one: the standard Attention (opset 23) fails in it"
    if op in ("LayerNormalization", "RMSNormalization") and not _normalizes_last_axis(node):
        return "normalizes the last axis only"
    if op == "LayerNormalization" and any(v.uses() or v.is_graph_output()
                                          for v in node.outputs[1:]):
        return "returns no Mean and InvStdDev outputs"
    if op == "LayerNormalization" and _dtype(node) == "bfloat16":
        return "lowers to a layer_norm that builds for float32 and float16 only"
    if op == "Elu" and _dtype(node) in ("float16", "bfloat16"):
        return "makes its alpha constant float32, which float16/bfloat16 inputs cannot meet"
    if op == "IsInf" and 0 in (node.attributes.get_int("detect_positive", 1),
                               node.attributes.get_int("detect_negative", 1)):
        return "ignores detect_positive/detect_negative: both infinities match"
    for half in ("float16", "bfloat16"):
        if op in FAILS_IN[half] and half in node_dtypes(node):
            return f"fails in {half} (its import or build: ops suite, llvm and cuda)"
    if op in ("Cast", "CastLike") and _dtype(node) == "bfloat16" and _to_integer(node):
        return "to an integer tests finiteness, which TVM builds for no bfloat16"
    if op == "PRelu" and _integer(_dtype(node)):
        return "takes float inputs only"
    if op == "Equal" and _dtype(node) == "bool":
        return "builds bool comparisons LLVM rejects"
    if op == "Pow" and _dtype(node, 1) and _dtype(node, 1) != _dtype(node):
        return "needs the exponent in the base's dtype (an int64 exponent fails its import)"
    if op == "Pow" and _integer(_dtype(node)):
        return "builds power for float types only"
    if op == "OneHot" and _dtype(node, 2) not in ("float64", "int64"):
        return "returns float64/int64 instead of the dtype of its values input"
    if op == "ReduceMean" and _dtype(node) == "int32":
        return "returns int64 for int32"
    if op in _REDUCES and _reduces_an_empty_axis(node):
        return ("leaves a reduction over an empty axis uninitialized (ONNX defines it as the "
                "reduction's identity)")
    return ""


def _reduces_an_empty_axis(node: ir.Node) -> bool:
    data = node.inputs[0] if node.inputs else None
    if data is None or data.shape is None:
        return False
    dims = list(data.shape)
    axes_input = node.inputs[1] if len(node.inputs) > 1 else None
    if axes_input is not None and axes_input.const_value is not None:
        axes = [int(a) for a in axes_input.const_value.numpy().ravel()]
    else:
        axes = list(node.attributes.get_ints("axes", []) or [])
    reduced = [dims[a % len(dims)] for a in axes] if axes and dims else dims
    return any(d == 0 for d in reduced)


def _normalizes_last_axis(node: ir.Node) -> bool:
    shape = node.inputs[0].shape if node.inputs and node.inputs[0] is not None else None
    axis = node.attributes.get_int("axis")
    axis = -1 if axis is None else axis
    return axis == -1 or (shape is not None and axis == len(shape) - 1)


def _to_integer(node: ir.Node) -> bool:
    """A Cast's `to`, or a CastLike's target input, is an integer type."""
    if node.op_type == "Cast":
        to = node.attributes.get_int("to")
        return to is not None and ir.DataType(to).is_integer()
    return _integer(_dtype(node, 1))


def _integer(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def _dtype(node: ir.Node, index: int = 0) -> str:
    value = node.inputs[index] if len(node.inputs) > index else None
    return value.dtype.numpy().name if value is not None and value.dtype is not None else ""


def lowering_support(node: ir.Node, profile: HardwareProfile) -> Support:
    """What a plain TVM backend takes: anything the importer converts, in the profile's dtypes."""
    imported = importer_support(node)
    if not imported.supported:
        return imported
    missing = sorted(node_dtypes(node) - set(profile.dtypes))
    if missing:
        return Support.no(f"dtype {', '.join(missing)} not in profile {profile.name}")
    return Support.yes()
