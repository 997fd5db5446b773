"""Read column blocks of a tensor directly where a chain of layout ops and a `take` does.

Exported attention computes q, k and v with one GEMM, then separates them: reshape,
expand_dims, permute_dims, squeeze, then one `take` per block. TVM runs that as a transpose
of the whole projection into a new tensor, then one copy per `take`, before the copies that
split the heads: three passes over the data where one will do. Where every reader of a
tensor is such a chain, and each `take` yields exactly a contiguous block of the tensor's
last axis in row-major order, the `take` becomes `reshape(strided_slice(tensor, block))`,
which TVM fuses with whatever reads it.

Whether a chain yields a block is found by running it on a probe (each element its own flat
index), not by reasoning about each op's index arithmetic: exact for any layout chain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import GenericConst
from tvm.relax.expr_functor import PyExprMutator, mutator

from xpuport.lowering.epilogue import Uses
from xpuport.lowering.library import rewrite_relax_functions, static_shape

# Each layout op as numpy computes it: (array, the op's call) -> array.
LAYOUT_OPS: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    "relax.reshape": lambda a, call: a.reshape([int(d) for d in call.args[1].values]),
    "relax.permute_dims": lambda a, call: np.transpose(
        a, None if call.attrs.axes is None else [int(x) for x in call.attrs.axes]),
    "relax.expand_dims": lambda a, call: np.expand_dims(
        a, tuple(int(x) for x in call.attrs.axis)),
    "relax.squeeze": lambda a, call: np.squeeze(
        a, None if call.attrs.axis is None else tuple(int(x) for x in call.attrs.axis)),
}
# The probe holds one int32 per element of the tensor: at most 128 MiB.
_MAX_PROBE = 1 << 25

Block = tuple[int, int]  # first column, last column + 1


def column_blocks_pass() -> Any:
    """A module pass reading column blocks directly (see the module's docstring)."""

    @tvm.transform.module_pass(opt_level=0, name="xpuport.ReadColumnBlocks")  # type: ignore[untyped-decorator]
    def read_blocks(module: Any, _context: Any) -> Any:
        module = relax.transform.FoldConstant()(module)  # shapes arrive as computed tensors
        for global_var, function in module.functions.items():
            if isinstance(function, relax.Function):
                module[global_var] = _rewrite_function(function)
        return module

    return read_blocks


def _rewrite_function(function: Any) -> Any:
    uses = Uses.of(function)
    slices: dict[Any, tuple[Any, Block]] = {}  # take var -> (tensor, block)
    for var in uses.values:  # in binding order: a chain's first tensor claims its takes
        for take, block in _block_takes(var, uses).items():
            slices.setdefault(take, block)
    if not slices:
        return function
    return relax.analysis.remove_all_unused(_replace_takes(function, slices))


def _block_takes(tensor: Any, uses: Uses) -> dict[Any, tuple[Any, Block]]:
    """take var -> (tensor, its block) for every take reading `tensor` through layout ops;
    {} unless every reader of `tensor` and of the chains is part of such a chain."""
    if not (isinstance(tensor.ty, relax.TensorType) and static_shape(tensor.ty)):
        return {}
    takes: list[tuple[Any, list[Any]]] = []  # (take var, the calls from `tensor` to it)
    pending: list[tuple[Any, list[Any]]] = [(tensor, [])]
    while pending:
        var, chain = pending.pop()
        if chain and not isinstance(var, relax.DataflowVar):
            return {}  # an intermediate is a function output: it must be computed
        for reader in uses.readers.get(var, []):
            call = uses.values.get(reader)
            if call is None:
                return {}  # read outside a binding (a function's return)
            name = _op_name(call)
            if name in LAYOUT_OPS:
                pending.append((reader, [*chain, call]))
            elif name == "relax.take" and isinstance(call.args[1], GenericConst) \
                    and isinstance(reader, relax.DataflowVar):
                takes.append((reader, [*chain, call]))
            else:
                return {}
    blocks = [_column_block(tensor, chain) for _, chain in takes]
    if not takes or any(block is None for block in blocks):
        return {}
    return {take: (tensor, block)
            for (take, _), block in zip(takes, blocks, strict=True) if block is not None}


def _column_block(tensor: Any, chain: list[Any]) -> Block | None:
    """The block of the last axis that `chain` (layout ops, then a take) yields, if it
    yields it whole and in row-major order; else None."""
    shape = [int(d) for d in tensor.ty.shape.values]
    if not shape or int(np.prod(shape)) > _MAX_PROBE:
        return None
    probe = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    for call in chain[:-1]:
        probe = LAYOUT_OPS[call.op.name](probe, call)
    take = chain[-1]
    if take.attrs.axis is None:
        return None
    picked = np.take(probe, take.args[1].value.numpy(), axis=int(take.attrs.axis)).ravel()
    rows, columns = int(np.prod(shape[:-1])), shape[-1]
    if picked.size == 0 or picked.size % rows:
        return None
    first, width = int(picked[0] % columns), picked.size // rows
    expected = np.arange(rows)[:, None] * columns + first + np.arange(width)[None, :]
    return (first, first + width) if np.array_equal(picked, expected.ravel()) else None


def _op_name(value: Any) -> str:
    is_op_call = isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
    return str(value.op.name) if is_op_call else ""


def _replace_takes(function: Any, slices: dict[Any, tuple[Any, Block]]) -> Any:
    @mutator
    class Replace(PyExprMutator):  # type: ignore[misc]  # TVM's mutator base is untyped
        def visit_var_binding_(self, binding: Any) -> None:
            if binding.var not in slices:
                super().visit_var_binding_(binding)
                return
            tensor, (first, last) = slices[binding.var]
            axis = len(tensor.ty.shape) - 1
            block = self.builder_.emit(relax.op.strided_slice(
                self.visit_expr(tensor), [axis], [first], [last], assume_inbound=True))
            self.set_var_remap(binding.var, self.builder_.emit(
                relax.op.reshape(block, binding.var.ty.shape)))

    module = tvm.IRModule({"main": function})
    return rewrite_relax_functions(module, Replace(module))["main"]
