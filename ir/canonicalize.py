"""Bring any loaded model to one canonical form: pinned opset, folded, pruned, shaped, sorted."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common
from onnx import helper, numpy_helper, version_converter
from onnx_ir.passes import PassError, PassManager
from onnxscript.optimizer import fold_constants

from xpuport.errors import CanonicalizeError
from xpuport.ir.static_compress import compress_to_gather

# What torch's dynamo exporter emits and what TVM 0.27's importer was measured on here;
# older models are converted up to it. Newer ones keep their opset: their ops (Attention,
# RotaryEmbedding at 23...) have no form at 20, and TVM's importer picks each op's converter
# by version.
PINNED_OPSET = 20
DEFAULT_DOMAINS = ("", "ai.onnx")


def canonicalize(model: onnx.ModelProto, *, inline_functions: bool = False) -> onnx.ModelProto:
    """Return the canonical form of `model`; the input is left untouched.

    Steps: convert up to PINNED_OPSET, inline local functions (on request), fold constants,
    turn Compress with a constant condition into Gather, remove dead nodes, functions and
    opsets, infer shapes, sort topologically, check.
    """
    converted = _to_pinned_opset(model)
    ir_model = ir.from_proto(converted)
    if inline_functions:
        common.InlinePass()(ir_model)
    # Shapes first: the folder turns Shape ops on static shapes (decomposed bodies are full
    # of them) into constants only where it knows the shapes.
    _infer_shapes(ir_model)
    fold_constants(ir_model)
    compress_to_gather(ir_model)
    passes = PassManager(
        [
            common.RemoveUnusedNodesPass(),
            common.RemoveUnusedFunctionsPass(),  # type: ignore[no-untyped-call]  # onnx-ir 1.1 leaves its __init__ unannotated
            common.RemoveUnusedOpsetsPass(),
            # Every Constant, value_float and value_ints ones too: TVM's importer reads only
            # a Constant's `value`, and decomposed function bodies are full of the others.
            common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
            common.TopologicalSortPass(),
            common.ShapeInferencePass(strict_mode=False),
        ]
    )
    try:
        result = passes(ir_model)
    except PassError as exc:
        raise CanonicalizeError(
            f"canonicalization failed in {exc.__class__.__name__}: {exc}",
            "run `xpuport inspect` on the model; if the exporter produced it, re-export "
            f"with opset_version={PINNED_OPSET}",
        ) from exc
    return _constants_as_tensors(ir.to_proto(result.model))


_CONSTANT_DTYPES = {"value_float": np.float32, "value_floats": np.float32,
                    "value_int": np.int64, "value_ints": np.int64}


def _constants_as_tensors(model: onnx.ModelProto) -> onnx.ModelProto:
    """A Constant left as a node (it feeds a graph output) holds a `value` tensor, the one
    form every importer reads (TVM's reads no value_float or value_ints)."""
    for node in model.graph.node:
        attribute = node.attribute[0] if node.op_type == "Constant" and node.attribute else None
        if attribute is None or attribute.name not in _CONSTANT_DTYPES:
            continue
        value = np.asarray(helper.get_attribute_value(attribute), _CONSTANT_DTYPES[attribute.name])
        node.ClearField("attribute")
        node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(value)))
    return model


def _infer_shapes(model: ir.Model) -> None:
    try:
        common.ShapeInferencePass(strict_mode=False)(model)
    except PassError as exc:
        raise CanonicalizeError(
            f"shape inference failed: {exc}",
            "run `onnx.checker.check_model(model, full_check=True)` to find the node") from exc


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    raise CanonicalizeError(
        "the model imports no version of the default ONNX domain",
        "add an opset_import for domain '' (every exporter writes one)",
    )


def _to_pinned_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    opset = default_opset(model)
    if opset >= PINNED_OPSET:
        return model
    try:
        converted = version_converter.convert_version(model, PINNED_OPSET)
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as exc:
        raise CanonicalizeError(
            f"cannot convert the model from opset {opset} up to opset "
            f"{PINNED_OPSET}: {str(exc).strip().splitlines()[0]}",
            f"re-export the model with opset_version={PINNED_OPSET}",
        ) from exc
    return converted
