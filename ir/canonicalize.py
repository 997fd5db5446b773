"""Bring any loaded model to one canonical form: pinned opset, folded, pruned, shaped, sorted."""

from __future__ import annotations

import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common
from onnx import version_converter
from onnx_ir.passes import PassError, PassManager
from onnxscript.optimizer import fold_constants

from xpuport.errors import CanonicalizeError

# What torch's dynamo exporter emits and what TVM 0.27's importer was measured on here;
# models exported at another opset are converted to it.
PINNED_OPSET = 20
DEFAULT_DOMAINS = ("", "ai.onnx")


def canonicalize(model: onnx.ModelProto, *, inline_functions: bool = False) -> onnx.ModelProto:
    """Return the canonical form of `model`; the input is left untouched.

    Steps: convert to PINNED_OPSET, inline local functions (on request), fold constants,
    remove dead nodes, functions and opsets, infer shapes, sort topologically, check.
    """
    converted = _to_pinned_opset(model)
    ir_model = ir.from_proto(converted)
    if inline_functions:
        common.InlinePass()(ir_model)
    fold_constants(ir_model)
    passes = PassManager(
        [
            common.RemoveUnusedNodesPass(),
            common.RemoveUnusedFunctionsPass(),  # type: ignore[no-untyped-call]  # onnx-ir 1.1 leaves its __init__ unannotated
            common.RemoveUnusedOpsetsPass(),
            common.LiftConstantsToInitializersPass(),
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
    return ir.to_proto(result.model)


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
    if opset == PINNED_OPSET:
        return model
    try:
        converted = version_converter.convert_version(model, PINNED_OPSET)
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as exc:
        raise CanonicalizeError(
            f"cannot convert the model from opset {opset} to the pinned opset "
            f"{PINNED_OPSET}: {str(exc).strip().splitlines()[0]}",
            f"re-export the model with opset_version={PINNED_OPSET}",
        ) from exc
    return converted
