"""Convolutions and GEMMs TVM computes itself: which, and conv weights in the layout its
schedule reads.

A library call costs tens of microseconds beyond the library's own work (torch's dispatch,
oneDNN's primitive set-up, the DLPack hand-over): the small CNN's 16-channel convs took
about 180 us a call through torch, 90-125 of them oneDNN's. TVM's direct convolution
(backends/cpu_conv_schedule.py) computes such a conv in about as long on one thread and
in half on two, and once no library runs in a model, TVM may have every core without
another thread pool spinning beside it (backends/cpu.py). So a model whose convolutions
are all small keeps them all in TVM; a model with a large one sends them all to the
library, which is faster there (ResNet-50's 3x3 convs: 1.2-1.4 ms a call in oneDNN,
1.5-2.3 ms in TVM on two threads).

GEMMs alike (backends/cpu_gemm_schedule.py): where no convolution needs the library, a
model whose GEMMs are all float32 with static shapes keeps them in TVM. TVM's packed,
register-blocked GEMM on two threads outran numpy's OpenBLAS on every encoder shape (175-192
against 147-178 GFLOP/s), and with no library left the model starts no thread pool but
TVM's, which then has every core.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.relax.expr_functor import PyExprMutator, mutator

from xpuport.lowering.channels_last import fold_constant_layouts
from xpuport.lowering.library import op_calls, rewrite_relax_functions, static_shape

# A conv of fewer multiply-adds than this stays in TVM (when every conv of the model does).
# The small CNN's largest, 16->16 3x3 at 56x56, has 7.2 M at batch 1 and 58 M at batch 8:
# at batch 8 the model took 3.0 ms with TVM's convs on two threads, 4.3 ms on oneDNN
# (onnxruntime 3.4 ms). ResNet-50's 1x1 convs at 56x56 (51 M) took as long in both, its
# 3x3 convs (115 M and more) 1.2-1.4 ms a call in oneDNN and 1.5-2.3 ms in TVM.
TVM_CONV_MACS = 1 << 26

_CONV2D = "relax.nn.conv2d"
_MATMUL = "relax.matmul"


def convs_stay_in_tvm(module: Any) -> bool:
    """Whether `module` has convolutions and TVM's direct schedule takes every one: float32,
    static shapes, NHWC (lowering/channels_last.py), ungrouped, fewer than TVM_CONV_MACS
    multiply-adds."""
    convs = [call for call in op_calls(module) if call.op.name == _CONV2D]
    return bool(convs) and all(_direct(call) and conv_macs(call) < TVM_CONV_MACS
                               for call in convs)


# A GEMM reducing over more than this, whose B is computed at run time, stays with the
# library: TVM's schedule then packs each column block (K x 16 floats) per call, and the
# d768 encoder's FFN GEMMs (K 3072, and 768 into 3072) ran at 136-139 GFLOP/s so, about 160
# in OpenBLAS. A constant B is packed at compile time instead (backends/cpu_gemm_schedule.py),
# and its GEMM stays in TVM at any K: the d768 encoder at batch 1 took 0.99-1.02x
# onnxruntime so, against 1.21-1.24x with its GEMMs on OpenBLAS, in one run.
TVM_GEMM_MAX_K = 1024


def gemms_stay_in_tvm(module: Any) -> bool:
    """Whether TVM's GEMM schedule takes every matmul of `module`: float32 matrices or
    batches of them, static shapes, a constant B or a reduction of at most TVM_GEMM_MAX_K."""
    constant = constant_test(module)
    return all(_direct_gemm(call, constant) for call in op_calls(module)
               if call.op.name == _MATMUL)


def constant_test(module: Any) -> Callable[[Any], bool]:
    """Whether an expression of `module`'s Relax functions is a constant or a variable bound
    to a value computed from constants alone (a weight's transpose): FoldConstant makes
    those constants."""
    constants: set[Any] = set()

    def constant(expr: Any) -> bool:
        return isinstance(expr, Constant) or expr in constants

    def computed_from_constants(value: Any) -> bool:
        return isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) \
            and bool(value.args) and all(map(constant, value.args))

    for function in module.functions.values():
        if isinstance(function, relax.Function):
            for block in getattr(function.body, "blocks", []):
                for binding in block.bindings:
                    if isinstance(binding, relax.VarBinding) and (
                            constant(binding.value) or computed_from_constants(binding.value)):
                        constants.add(binding.var)
    return constant


def _direct_gemm(matmul: Any, constant: Callable[[Any], bool]) -> bool:
    types = [matmul.ty, *(arg.ty for arg in matmul.args)]
    return all(isinstance(t, relax.TensorType) and static_shape(t) and len(t.shape) >= 2
               and str(t.dtype) == "float32" for t in types) and not matmul.attrs.out_dtype \
        and (constant(matmul.args[1]) or int(matmul.args[0].ty.shape[-1]) <= TVM_GEMM_MAX_K)


def _direct(conv: Any) -> bool:
    types = [conv.ty, *(arg.ty for arg in conv.args)]
    return all(isinstance(t, relax.TensorType) and static_shape(t) and str(t.dtype) == "float32"
               for t in types) and conv.attrs.data_layout == "NHWC" \
        and int(conv.attrs.groups) == 1 and not conv.attrs.out_dtype


def conv_macs(conv: Any) -> int:
    """Multiply-adds of a conv2d: its output's elements times each one's reduction."""
    weight = [int(d) for d in conv.args[1].ty.shape.values]
    del weight[str(conv.attrs.kernel_layout).index("O")]  # leaves C_in, kh, kw
    return math.prod(int(d) for d in conv.ty.shape.values) * math.prod(weight)


def hwio_weights_pass() -> Any:
    """A module pass giving every ungrouped NHWC conv2d with OHWI weights (as
    lowering/channels_last.py leaves them) HWIO weights instead: the output channels
    innermost, as DirectConv vectorizes them. Constant weights are transposed here."""

    @tvm.transform.module_pass(opt_level=0, name="xpuport.HwioWeights")  # type: ignore[untyped-decorator]
    def to_hwio(module: Any, _context: Any) -> Any:
        if not any(_ohwi(call) for call in op_calls(module) if call.op.name == _CONV2D):
            return module
        rewritten = rewrite_relax_functions(module, _Hwio(module))
        return fold_constant_layouts(rewritten)

    return to_hwio


def _ohwi(conv: Any) -> bool:
    attrs = conv.attrs
    return (attrs.data_layout, attrs.kernel_layout) == ("NHWC", "OHWI") \
        and (attrs.out_layout or "NHWC") == "NHWC" and int(attrs.groups) == 1


@mutator
class _Hwio(PyExprMutator):  # type: ignore[misc]  # TVM's mutator base is untyped
    def visit_call_(self, call: Any) -> Any:
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or call.op.name != _CONV2D or not _ohwi(call):
            return call
        attrs = call.attrs
        weight = relax.op.permute_dims(call.args[1], [1, 2, 3, 0])
        return relax.op.nn.conv2d(
            call.args[0], weight, strides=attrs.strides, padding=attrs.padding,
            dilation=attrs.dilation, groups=attrs.groups, data_layout="NHWC",
            kernel_layout="HWIO", out_layout="NHWC", out_dtype=attrs.out_dtype or None)
