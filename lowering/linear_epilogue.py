"""Fuse a GEMM with a constant weight and its epilogue (bias, then an activation or a residual
add) into one library call: a `linear` layer, as a DNN library runs it.

Transformers are mostly `act(x @ W + b)` and `x @ W + b + residual`; dispatched as a bare
matmul, each layer goes library -> TVM kernel for the bias and GELU -> library. A DNN
library's linear applies them on its own output while it is in cache (oneDNN's post-ops).
Small GEMMs stay matmuls: below `min_macs` a library's dispatch costs more than it saves.
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
from xpuport.lowering.library import Library, matmul_macs, static_shape

LINEAR_OP = "linear"

# The kernel's activation argument: the code of the op that ends the chain.
ACTIVATIONS = {"relax.nn.relu": 1, "relax.nn.gelu": 2, "relax.nn.gelu_tanh": 3}

_MATMUL = is_op("relax.matmul")(wildcard(), is_const())
_BIASED = is_op("relax.add")(_MATMUL, is_const())
_RESIDUAL = is_op("relax.add")(_BIASED, wildcard())
# Longest first: a shorter pattern would claim the inner part of a longer one.
_PATTERNS = (
    *(is_op(name)(_BIASED) for name in ACTIVATIONS),
    _RESIDUAL,
    _BIASED,
    *(is_op(name)(_MATMUL) for name in ACTIVATIONS),
    _MATMUL,
)


def linear_pass(library: Library) -> Any:
    """A module pass rewriting constant-weight GEMMs and their epilogues into `library`'s
    linear kernel: (x, W (K, N), bias (N,), [residual], activation code)."""
    return epilogue_pass("xpuport.FuseLinear", _PATTERNS, _fused_call, library)


def _fused_call(call: Any, matched: dict[Any, Any], library: Library, uses: Uses) -> Any | None:
    matmul = matched[_MATMUL]
    if not _eligible(matmul, library) or not same_type(call.ty, matmul.ty):
        return None
    columns = int(matmul.ty.shape[-1])
    bias = _bias(matched[_BIASED].args[1], columns) if _BIASED in matched else \
        np.zeros(columns, dtype=str(matmul.ty.dtype))
    if bias is None:
        return None
    args = epilogue_operands(call, matched, uses, (_MATMUL, _BIASED, _RESIDUAL), matmul.args,
                             bias)
    if args is None:
        return None
    activation = ACTIVATIONS.get(call.op.name, 0)
    return relax.op.call_pure_packed(library.function, *args, int_flag(activation),
                                     ty_args=call.ty)


def _eligible(matmul: Any, library: Library) -> bool:
    """x (..., K) @ W (K, N) in the library's dtypes, static, with enough work to pay off."""
    data, weight = (arg.ty for arg in matmul.args)
    types = (data, weight, matmul.ty)
    if not all(isinstance(t, relax.TensorType) and static_shape(t) for t in types):
        return False
    if any(str(t.dtype) not in library.dtypes for t in types):
        return False
    if len(data.shape) < 2 or len(weight.shape) != 2:
        return False
    return matmul_macs(matmul) >= library.min_macs


def _bias(constant: Any, columns: int) -> np.ndarray | None:
    """A per-column bias, (N,) or (1, ..., 1, N), as an (N,) array."""
    values = constant.value.numpy()
    if values.size != columns or values.shape[-1:] != (columns,):
        return None
    return np.ascontiguousarray(values.reshape(columns))
