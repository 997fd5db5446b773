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
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from xpuport.lowering.epilogue import (
    Uses,
    epilogue_operands,
    epilogue_pass,
    int_flag,
    same_type,
)
from xpuport.lowering.library import Library, channels_axis, conv2d_attributes, eligible

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


def conv_epilogue_pass(library: Library) -> Any:
    """A module pass fusing conv epilogues into calls of `library` (op conv2d_epilogue)."""
    return epilogue_pass("xpuport.FuseConvEpilogue", _PATTERNS, _fused_call, library)


def _fused_call(call: Any, matched: dict[Any, Any], library: Library, uses: Uses) -> Any | None:
    conv = matched[_CONV]
    if not eligible(conv, library) or not same_type(call.ty, conv.ty):
        return None
    channels = int(conv.ty.shape[channels_axis(library.layout)])
    bias = _bias(matched[_BIASED].args[1], channels, library.layout) \
        if _BIASED in matched else np.zeros(channels, dtype="float32")
    if bias is None:
        return None
    args = epilogue_operands(call, matched, uses, (_CONV, _BIASED, _RESIDUAL), conv.args, bias)
    if args is None:
        return None
    relu = int(call.op.name == "relax.nn.relu")
    flags = [*conv2d_attributes(conv), int_flag(relu)]
    return relax.op.call_pure_packed(library.function, *args, *flags, ty_args=call.ty)


# The shapes of a per-output-channel bias in each layout: in NCHW a (C,) one would broadcast
# along the width, not the channels.
_BIAS_SHAPES = {"NCHW": ((1, -1, 1, 1), (-1, 1, 1)), "NHWC": ((1, 1, 1, -1), (-1,))}


def _bias(constant: Any, channels: int, layout: str) -> np.ndarray | None:
    """A per-output-channel bias as a (C,) array, or None if `constant` is not one."""
    values = constant.value.numpy()
    shapes = [tuple(channels if d == -1 else d for d in s) for s in _BIAS_SHAPES[layout]]
    if values.shape not in shapes:
        return None
    return np.ascontiguousarray(values.reshape(channels))
