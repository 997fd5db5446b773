"""Fuse a convolution's epilogue (bias, residual add, ReLU) into its library call.

A conv2d dispatched alone leaves its bias add and ReLU to a TVM kernel, so every layer of a
CNN goes library -> TVM -> library, each pass over the activations in a different thread
pool. This pass rewrites `relu(conv2d(x, W) + b [+ residual])` (each part optional but the
conv) into one call of the library's `conv2d_epilogue` kernel, which applies them in place
on the library's own output. It only takes an epilogue whose intermediate values nothing
else reads, so no value is computed twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from xpuport.lowering.library import Library, conv2d_attributes, eligible

EPILOGUE_OP = "conv2d_epilogue"

_CONV = is_op("relax.nn.conv2d")(wildcard(), is_const())
_BIASED = is_op("relax.add")(_CONV, is_const())
_RESIDUAL = is_op("relax.add")(_BIASED, wildcard())
# Longest first: a shorter pattern would claim the inner part of a longer one.
_PATTERNS = (
    is_op("relax.nn.relu")(_RESIDUAL),
    is_op("relax.nn.relu")(_BIASED),
    _BIASED,
    is_op("relax.nn.relu")(_CONV),
)


def epilogue_pass(library: Library) -> Any:
    """A module pass fusing conv epilogues into calls of `library` (op conv2d_epilogue)."""

    @tvm.transform.module_pass(opt_level=0, name="xpuport.FuseConvEpilogue")  # type: ignore[untyped-decorator]
    def fuse(module: Any, _context: Any) -> Any:
        module = relax.transform.FoldConstant()(module)  # biases arrive as reshape(constant)
        for global_var, function in module.functions.items():
            if isinstance(function, relax.Function):
                module[global_var] = _fuse_function(function, library)
        return module

    return fuse


def _fuse_function(function: Any, library: Library) -> Any:
    for pattern in _PATTERNS:
        users = _users(function)
        producer = list(relax.analysis.get_var2val(function).items())

        def rewrite(call: Any, matched: dict[Any, Any], users: dict[Any, int] = users,
                    producer: list[tuple[Any, Any]] = producer) -> Any:
            fused = _fused_call(call, matched, library, users, producer)
            return call if fused is None else fused

        function = relax.analysis.remove_all_unused(rewrite_call(pattern, rewrite, function))
    return function


def _fused_call(call: Any, matched: dict[Any, Any], library: Library,
                users: dict[Any, int], producer: list[tuple[Any, Any]]) -> Any | None:
    conv = matched[_CONV]
    inner = [matched[p] for p in (_CONV, _BIASED, _RESIDUAL) if p in matched]
    inner = [value for value in inner if not value.same_as(call)]
    if not all(_read_once(value, users, producer) for value in inner):
        return None  # an intermediate value is read elsewhere too
    if not eligible(conv, library) or not _same_type(call.ty, conv.ty):
        return None
    channels = int(conv.ty.shape[1])
    bias = _bias(matched[_BIASED].args[1], channels) if _BIASED in matched else \
        np.zeros(channels, dtype="float32")
    if bias is None:
        return None
    args = [conv.args[0], conv.args[1], relax.const(bias)]
    if _RESIDUAL in matched:  # add is commutative: the residual is the operand not biased
        biased = _var_of(matched[_BIASED], producer)
        residual = [arg for arg in matched[_RESIDUAL].args if not arg.same_as(biased)]
        if len(residual) != 1 or not _same_type(residual[0].ty, call.ty):
            return None
        args.append(residual[0])
    relu = int(call.op.name == "relax.nn.relu")
    flags = [*conv2d_attributes(conv), relax.prim_value(tvm.tirx.IntImm("int64", relu))]
    return relax.op.call_pure_packed(library.function, *args, *flags, ty_args=call.ty)


def _bias(constant: Any, channels: int) -> np.ndarray | None:
    """A per-output-channel bias, (1, C, 1, 1) or (C, 1, 1), as a (C,) array (a (C,) one
    would broadcast along the width, not the channels)."""
    values = constant.value.numpy()
    if values.shape not in ((1, channels, 1, 1), (channels, 1, 1)):
        return None
    return np.ascontiguousarray(values.reshape(channels))


def _read_once(value: Any, users: dict[Any, int], producer: list[tuple[Any, Any]]) -> bool:
    var = _var_of(value, producer)
    return isinstance(var, relax.DataflowVar) and users.get(var, 0) == 1


def _var_of(value: Any, producer: list[tuple[Any, Any]]) -> Any | None:
    """The variable bound to `value` (the matcher hands over values, not variables)."""
    return next((var for var, bound in producer if bound.same_as(value)), None)


def _same_type(left: Any, right: Any) -> bool:
    return (isinstance(left, relax.TensorType) and str(left.dtype) == str(right.dtype)
            and tvm_ffi.structural_equal(left.shape, right.shape))


def _users(function: Any) -> dict[Any, int]:
    """How many bindings read each variable of the function's dataflow blocks."""
    counts: dict[Any, int] = {}
    for block in function.body.blocks:
        if isinstance(block, relax.DataflowBlock):
            for var, readers in relax.analysis.udchain(block).items():
                counts[var] = len(readers)
    return counts
