"""Vectorizable float32 transcendentals for the CPU: erf, GELU, exp, tanh, softmax.

LLVM lowers TVM's erf/exp/tanh to scalar libm calls, which no schedule can vectorize: a
128x1024 GELU took 1.47 ms, most of a d256 encoder's time. TVM's topi has the polynomial
approximations onnxruntime and Eigen use (`fast_erf`, `fast_exp`, `fast_tanh`,
`fast_softmax`); this pass routes float32 ops to them. Other dtypes keep the exact forms.
The conformance suite holds them to the float32 tolerance policy like every other kernel.
"""

from __future__ import annotations

import math
from typing import Any

import tvm
from tvm import relax, topi
from tvm.relax.expr_functor import PyExprMutator, mutator

from xpuport.lowering.library import rewrite_relax_functions


def _fast_erf(x: Any) -> Any:
    """topi's fast_erf clamps its input to [-4, 4] first, so erf(nan) would be +-1: keep
    nan; erf(+-inf) = +-1 holds."""
    return topi.where(topi.isnan(x), x, topi.fast_erf(x))


_UNARY = {"relax.erf": _fast_erf, "relax.exp": topi.fast_exp, "relax.tanh": topi.fast_tanh}


def _fast_gelu(x: Any) -> Any:
    half = tvm.tirx.const(0.5, "float32")
    scaled = topi.multiply(x, tvm.tirx.const(1 / math.sqrt(2), "float32"))
    return topi.multiply(topi.multiply(x, half), topi.add(_fast_erf(scaled), 1.0))


@mutator
class _FastMath(PyExprMutator):  # type: ignore[misc]  # TVM's mutator base is untyped
    def visit_call_(self, call: Any) -> Any:
        call = super().visit_call_(call)
        name = call.op.name if isinstance(call.op, tvm.ir.Op) else ""
        if not _float32(call):
            return call
        if name in _UNARY:
            return self.builder_.call_te(_UNARY[name], call.args[0])
        if name == "relax.nn.gelu":
            return self.builder_.call_te(_fast_gelu, call.args[0])
        if name == "relax.nn.softmax":
            return self.builder_.call_te(topi.nn.fast_softmax, call.args[0], call.attrs.axis)
        return call


def _float32(call: Any) -> bool:
    return isinstance(call.ty, relax.TensorType) and str(call.ty.dtype) == "float32"


@tvm.transform.module_pass(opt_level=0, name="xpuport.FastMath")  # type: ignore[untyped-decorator]
def fast_math(module: Any, _context: Any) -> Any:
    return rewrite_relax_functions(module, _FastMath(module))
