"""ONNX → Relax through TVM's importer, with its failures turned into CompileError."""

from __future__ import annotations

from typing import Any

import onnx
from tvm.relax.frontend.onnx import from_onnx

from xpuport.errors import CompileError


def to_relax(model: onnx.ModelProto) -> Any:
    """Import `model` into a Relax IRModule; weights become constants of the module."""
    try:
        return from_onnx(model, keep_params_in_input=False)
    except Exception as exc:  # the importer raises anything from KeyError up
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        raise CompileError(
            f"TVM's ONNX importer failed: {exc.__class__.__name__}: {detail}",
            "run `xpuport inspect` to see the graph's ops; re-export with simpler ops "
            "or report the op to xpuport",
        ) from exc
