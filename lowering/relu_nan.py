"""Relu that keeps nan, as ONNX's reference and onnxruntime do.

TVM computes relu as max(x, 0), which its CPU and CUDA code generators emit as a max that
returns 0 for nan (LLVM's maxnum, CUDA's fmaxf): a nan upstream vanished at the first Relu,
on every TVM backend, and with it the trace of where it came from. `x < 0 ? 0 : x` costs the
same compare and select and keeps nan. Relus already fused into a library call (oneDNN's
post-op keeps nan too) are gone by the time this pass runs.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax, te
from tvm.relax.expr_functor import PyExprMutator, mutator

from xpuport.lowering.library import rewrite_relax_functions


def _relu_keeping_nan(x: Any) -> Any:
    zero = tvm.tirx.const(0, x.dtype)
    return te.compute(x.shape, lambda *i: tvm.tirx.Select(x(*i) < zero, zero, x(*i)),
                      name="relu_keeping_nan", tag="elemwise")


@mutator
class _ReluKeepingNan(PyExprMutator):  # type: ignore[misc]  # TVM's mutator base is untyped
    def visit_call_(self, call: Any) -> Any:
        call = super().visit_call_(call)
        if (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.relu"
                and isinstance(call.ty, relax.TensorType) and "float" in str(call.ty.dtype)):
            # named as TVM names its relu, so fused kernels keep their names (fused_add_relu)
            return self.builder_.call_te(_relu_keeping_nan, call.args[0],
                                         primfunc_name_hint="relu")
        return call


@tvm.transform.module_pass(opt_level=0, name="xpuport.ReluKeepingNan")  # type: ignore[untyped-decorator]
def relu_keeping_nan(module: Any, _context: Any) -> Any:
    return rewrite_relax_functions(module, _ReluKeepingNan(module))
