"""What the epilogue fusions share: match op chains that end a library call (a conv's or a
GEMM's bias, residual add, activation), and rewrite a chain only where nothing else reads its
intermediate values, so that no value is computed twice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import rewrite_call

from xpuport.lowering.library import Library


@dataclass(frozen=True)
class Uses:
    """Who reads what in one function: the variables that read each dataflow variable, and
    the value bound to each variable (the matcher hands over values, not variables)."""

    readers: dict[Any, list[Any]]
    values: dict[Any, Any]

    @classmethod
    def of(cls, function: Any) -> Uses:
        readers: dict[Any, list[Any]] = {}
        for block in function.body.blocks:
            if isinstance(block, relax.DataflowBlock):
                for var, users in relax.analysis.udchain(block).items():
                    readers[var] = list(users)
        return cls(readers, dict(relax.analysis.get_var2val(function)))

    def var_of(self, value: Any) -> Any | None:
        return next((var for var, bound in self.values.items() if bound.same_as(value)), None)

    def read_once(self, value: Any) -> bool:
        var = self.var_of(value)
        return isinstance(var, relax.DataflowVar) and len(self.readers.get(var, [])) == 1


# Builds the library's fused call from the matched chain (`call` is its last op), or None
# to keep the chain as it is: (call, matched, library, uses).
FusedCall = Callable[[Any, dict[Any, Any], Library, Uses], Any | None]


def epilogue_pass(name: str, patterns: Sequence[Any], fused_call: FusedCall,
                  library: Library) -> Any:
    """A module pass that rewrites, pattern by pattern (longest first: a shorter one would
    claim the inner part of a longer one), every chain `fused_call` accepts for `library`."""

    @tvm.transform.module_pass(opt_level=0, name=name)  # type: ignore[untyped-decorator]
    def fuse(module: Any, _context: Any) -> Any:
        module = relax.transform.FoldConstant()(module)  # biases arrive as reshape(constant)
        for global_var, function in module.functions.items():
            if isinstance(function, relax.Function):
                module[global_var] = _fuse_function(function, patterns, fused_call, library)
        return module

    return fuse


def _fuse_function(function: Any, patterns: Sequence[Any], fused_call: FusedCall,
                   library: Library) -> Any:
    for pattern in patterns:
        uses = Uses.of(function)

        def rewrite(call: Any, matched: dict[Any, Any], uses: Uses = uses) -> Any:
            fused = fused_call(call, matched, library, uses)
            return call if fused is None else fused

        function = relax.analysis.remove_all_unused(rewrite_call(pattern, rewrite, function))
    return function


def _intermediates_read_once(call: Any, matched: dict[Any, Any], inner: Sequence[Any],
                            uses: Uses) -> bool:
    """Whether every matched value of the `inner` patterns but the chain's last is read only
    by the chain."""
    values = [matched[p] for p in inner if p in matched]
    return all(uses.read_once(value) for value in values if not value.same_as(call))


def epilogue_operands(call: Any, matched: dict[Any, Any], uses: Uses,
                      chain: tuple[Any, Any, Any], operands: Sequence[Any],
                      bias: np.ndarray) -> list[Any] | None:
    """The fused call's operands: the library op's `operands`, the bias, then the residual
    where the chain adds one. `chain` is its (op, biased, residual) patterns. None where the
    chain may not fuse: an intermediate is read elsewhere, or the residual broadcasts."""
    _, biased, residual = chain
    if not _intermediates_read_once(call, matched, chain, uses):
        return None
    args = [*operands, relax.const(bias)]
    if residual in matched:
        operand = _residual_operand(matched[residual], matched[biased], uses, call.ty)
        if operand is None:
            return None
        args.append(operand)
    return args


def _residual_operand(add: Any, biased: Any, uses: Uses, result_type: Any) -> Any | None:
    """The operand of `add` that is not `biased` (add is commutative), if it has the result's
    type (a residual that broadcasts is left to TVM)."""
    biased_var = uses.var_of(biased)
    others = [arg for arg in add.args if not arg.same_as(biased_var)]
    if len(others) != 1 or not same_type(others[0].ty, result_type):
        return None
    return others[0]


def same_type(left: Any, right: Any) -> bool:
    return (isinstance(left, relax.TensorType) and isinstance(right, relax.TensorType)
            and str(left.dtype) == str(right.dtype)
            and tvm_ffi.structural_equal(left.shape, right.shape))


def int_flag(value: int) -> Any:
    return relax.prim_value(tvm.tirx.IntImm("int64", value))
