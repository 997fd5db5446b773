"""Move a model's convolutions to NHWC, once for the whole model, ahead of library dispatch.

oneDNN computes in a blocked or channels-last layout. Given NCHW tensors it reorders the
activations in and the result out on every call: the small CNN's four convs took 846 us so,
564 us on the same tensors kept channels-last (torch 2.13, 2-core AVX2 host). TVM's
ConvertLayout rewrites every conv2d to NHWC/OHWI and carries the layout through the ops
between them (bias adds, ReLU, pooling, residual adds), so the model transposes its input
and its last feature map once instead of each conv reordering twice. The weights and biases
it transposes become constants again, as the conv epilogue and dispatch passes require:
numpy transposes them here, where TVM's FoldConstant built and ran a kernel for each
(ResNet-50 compiled in 14 s with it, 5 s before the layout change).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from xpuport.lowering.column_blocks import LAYOUT_OPS
from xpuport.lowering.library import has_op, op_calls, rewrite_relax_functions


def channels_last_pass() -> Any:
    """A module pass putting every conv2d of the module in NHWC with OHWI weights, or
    leaving the module as it is where TVM's ConvertLayout fails on it."""

    @tvm.transform.module_pass(opt_level=0, name="xpuport.ChannelsLast")  # type: ignore[untyped-decorator]
    def to_channels_last(module: Any, _context: Any) -> Any:
        if not has_op(module, "relax.nn.conv2d"):
            return module
        try:
            converted = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]})(module)
        except tvm.error.InternalError:
            # TVM could not carry NHWC through some op (its import of ONNX's Sum: a stack,
            # then a sum over the new axis): the model stays NCHW, its convs go to the
            # NCHW kernels, and the manifest's library_calls name those.
            return module
        if not _legalizes_as_well(converted, module):
            return module  # an op TVM has no NHWC kernel for (conv2d_transpose): as above
        return fold_constant_layouts(converted)

    return to_channels_last


def fold_constant_layouts(module: Any) -> Any:
    """`module` with each transpose or reshape of a constant replaced by the constant it
    computes, and the bindings left unused removed."""
    folded = rewrite_relax_functions(module, _ConstantLayouts(module))
    return relax.transform.DeadCodeElimination()(folded)


def _legalizes_as_well(converted: Any, original: Any) -> bool:
    """Whether TVM turns every op of `converted` into kernels that it does for `original`:
    ConvertLayout also hands NHWC to ops whose lowering takes only NCHW (conv2d_transpose),
    which would fail the build later. About 0.3 s for ResNet-50."""
    left = _unlegalized(converted)
    return not left or left <= _unlegalized(original)


def _unlegalized(module: Any) -> set[str]:
    """The operators LegalizeOps leaves in `module`'s Relax functions."""
    legalized = relax.transform.LegalizeOps()(module)
    return {call.op.name for call in op_calls(legalized)} - _RUNTIME_OPS


# Operators the VM runs as they are, never legalized.
_RUNTIME_OPS = frozenset({"relax.call_tir", "relax.call_dps_packed", "relax.call_pure_packed"})


# What ConvertLayout applies to constants (weights, biases).
_FOLDED = frozenset({"relax.permute_dims", "relax.reshape"})


@mutator
class _ConstantLayouts(PyExprMutator):  # type: ignore[misc]  # TVM's mutator base is untyped
    """permute_dims and reshape of a constant, replaced by the constant they compute."""

    def visit_call_(self, call: Any) -> Any:
        call = super().visit_call_(call)
        name = call.op.name if isinstance(call.op, tvm.ir.Op) else ""
        if name not in _FOLDED:
            return call
        source = call.args[0]
        if isinstance(source, relax.Var):
            source = self.lookup_binding(source)
        if not isinstance(source, tvm.ir.expr.Constant):
            return call
        return relax.const(np.ascontiguousarray(LAYOUT_OPS[name](source.value.numpy(), call)))

    def visit_var_(self, var: Any) -> Any:
        return self._constant_or(super().visit_var_(var))

    def visit_dataflow_var_(self, var: Any) -> Any:
        return self._constant_or(super().visit_dataflow_var_(var))

    def _constant_or(self, var: Any) -> Any:
        """A use of a value bound to a constant reads the constant, as the passes' patterns
        (is_const) expect."""
        bound = self.lookup_binding(var)
        return bound if isinstance(bound, tvm.ir.expr.Constant) else var
