"""Check placement, import, run the backend's passes and TVM's pipeline, build."""

from __future__ import annotations

from typing import Any

import onnx
import onnx_ir as ir
import tvm

from xpuport.backends.base import Backend, CompileOptions, TvmBackend
from xpuport.errors import CompileError, UnsupportedOpError, XpuportError, take_raised_in_pass
from xpuport.hw_profiles import HardwareProfile
from xpuport.lowering.to_relax import to_relax


def check_support(model: onnx.ModelProto, backend: Backend, profile: HardwareProfile) -> None:
    """Refuse the graph, naming every declined node, rather than fall back silently."""
    declined = []
    for node in ir.from_proto(model).graph.all_nodes():
        support = backend.supports(node, profile)
        if not support.supported:
            declined.append(f"{node.name or '(unnamed)'} ({node.op_type}): {support.reason}")
    if declined:
        shown = "\n    ".join(declined[:20])
        more = f"\n    ... and {len(declined) - 20} more" if len(declined) > 20 else ""
        raise UnsupportedOpError(
            f"backend '{backend.name}' with profile '{profile.name}' declines "
            f"{len(declined)} node(s):\n    {shown}{more}",
            "see every node's placement with `xpuport inspect MODEL --backend "
            f"{backend.name}`; use a profile that supports these ops/dtypes, or change the model",
        )


def build(
    model: onnx.ModelProto, backend: TvmBackend, profile: HardwareProfile, options: CompileOptions
) -> Any:
    """Lower the canonical `model` for `backend`; returns TVM's VM executable."""
    check_support(model, backend, profile)
    return lower(to_relax(model), backend, profile, options)


def lower(
    module: Any, backend: TvmBackend, profile: HardwareProfile, options: CompileOptions
) -> Any:
    """Run the backend's passes and TVM's pipeline on a Relax IRModule; build it."""
    target = backend.target(profile)
    try:
        with tvm.transform.PassContext(opt_level=options.opt_level), target:
            module = tvm.transform.Sequential(list(backend.passes(profile, options)))(module)
            # No relax_pipeline argument: TVM then picks the target's default pipeline
            # (GPU targets need its dlight schedules; "default" would build host code only).
            pipeline = backend.pipeline(profile, options)
            backend.before_build()
            if pipeline is None:
                return tvm.compile(module, target=target)
            return tvm.compile(module, target=target, relax_pipeline=pipeline)
    except XpuportError:
        raise  # a pass refused the input: its own message and fix
    except Exception as exc:  # TVM 0.27 raises builtin types and its own; all mean 'failed'
        if (refused := take_raised_in_pass()) is not None:
            raise refused from exc
        raise CompileError(
            f"TVM failed to build for {target.kind.name}: "
            f"{(str(exc).strip() or repr(exc)).splitlines()[0]}",
            "set TVM_BACKTRACE=1 for TVM's trace, and report it with `xpuport inspect` output",
        ) from exc
