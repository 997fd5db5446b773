"""TVM BYOC for the simulated NPU: patterns, the `relax.ext.npusim` codegen, and a check.

FuseOpsByPattern wraps every Relax op npusim has a kernel for in a composite function,
MergeCompositeFunctions groups neighbours into one function per NPU region, and RunCodegen
hands those to `relax.ext.npusim`, which writes each as one TE PrimFunc with the NPU's
arithmetic (kernels.py) and builds them for the host CPU, the simulator. The VM then calls
them by their global symbol. `AllClaimedOnNpu` refuses a device region in which anything
was left for TVM's own host code: a claimed node never runs elsewhere silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tvm
import tvm_ffi
from tvm import relax, te
from tvm.relax.backend.pattern_registry import get_patterns_with_prefix, register_patterns
from tvm.relax.dpl import is_op, wildcard

from xpuport.errors import CompileError
from xpuport_npusim.kernels import RELAX_OPS, lower_op

CODEGEN = "npusim"
_UNARY = {"relax.nn.relu", "relax.nn.gelu", "relax.nn.gelu_tanh", "relax.sigmoid", "relax.tanh",
          "relax.exp", "relax.sqrt", "relax.erf", "relax.negative", "relax.abs",
          "relax.nn.softmax", "relax.sum", "relax.max", "relax.mean", "relax.expand_dims",
          "relax.squeeze", "relax.permute_dims"}
_ARITY = {"relax.nn.layer_norm": 3}


def _pattern(op: str) -> Any:
    arity = 1 if op in _UNARY else _ARITY.get(op, 2)
    return is_op(op)(*(wildcard() for _ in range(arity)))


def patterns() -> list[Any]:
    """npusim's fusion patterns, registered with TVM once."""
    if not get_patterns_with_prefix(CODEGEN):
        register_patterns([(f"{CODEGEN}.{op.removeprefix('relax.')}", _pattern(op))
                           for op in RELAX_OPS])
    return list(get_patterns_with_prefix(CODEGEN))


def byoc_passes(accumulator: str) -> list[Any]:
    return [
        relax.transform.FuseOpsByPattern(patterns(), bind_constants=False),
        MergeCompositeFunctionsPerEntry(),
        relax.transform.RunCodegen({CODEGEN: {"accumulator": accumulator}}),
        AllClaimedOnNpu(),
    ]


@tvm.transform.module_pass(opt_level=0, name="MergeCompositeFunctionsPerEntry")
class MergeCompositeFunctionsPerEntry:
    """MergeCompositeFunctions for every entry function, not only `main`.

    TVM 0.27's pass merges the composites that `main` calls and fails on a module without
    `main`; xpuport's conformance engine builds many cases as one module of `case_N`
    functions. Each entry is merged on its own, as `main` of a module of what it calls;
    the composites' names are unique module-wide, so the merged functions' names are too.
    """

    def transform_module(self, module: Any, _context: Any) -> Any:
        merged: dict[Any, Any] = {}
        for var, function in module.functions.items():
            if not isinstance(function, relax.Function) or _is_composite(function):
                continue
            alone = tvm.IRModule({tvm.ir.GlobalVar("main"): function,
                                  **{callee: module[callee] for callee in _callees(function)}})
            for callee, body in relax.transform.MergeCompositeFunctions()(alone).functions.items():
                merged[var if callee.name_hint == "main" else callee] = body
        kept = {var: f for var, f in module.functions.items() if not isinstance(f, relax.Function)}
        return tvm.IRModule({**kept, **merged}, attrs=module.attrs)


def _is_composite(function: Any) -> bool:
    return function.attrs is not None and "Composite" in function.attrs


def _callees(function: Any) -> list[Any]:
    found: dict[str, Any] = {}

    def visit(expr: Any) -> None:
        if isinstance(expr, tvm.ir.GlobalVar):
            found.setdefault(expr.name_hint, expr)

    relax.analysis.post_order_visit(function.body, visit)
    return list(found.values())


def _codegen(functions: Sequence[Any], options: Any, constant_names: Any) -> list[Any]:
    """Every offloaded function as a PrimFunc under its global symbol, in one host library."""
    if not functions:
        return []
    accumulator = str(options["accumulator"]) if options and "accumulator" in options \
        else "float32"
    module = tvm.IRModule({
        str(function.attrs["global_symbol"]): region_primfunc(function, accumulator)
        for function in functions
    })
    return [tvm.tirx.build(module, target=tvm.target.Target({"kind": "llvm"}))]


# RunCodegen calls the global function `relax.ext.<codegen name>` with the offloaded functions.
tvm_ffi.register_global_func(f"relax.ext.{CODEGEN}", _codegen)


def region_primfunc(function: Any, accumulator: str) -> Any:
    """One merged region (calls of local composite functions) as one TE PrimFunc."""
    params = [_placeholder(param, index) for index, param in enumerate(function.params)]
    values: dict[Any, Any] = dict(zip(function.params, params, strict=True))
    composites: dict[Any, Any] = {}
    for block in function.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Function):
                composites[binding.var] = value
            elif isinstance(value, relax.Var):
                values[binding.var] = values[value]
            elif isinstance(value, relax.Call) and value.op in composites:
                args = [values[arg] for arg in value.args]
                values[binding.var] = _lower_composite(composites[value.op], args, accumulator)
            else:
                raise CompileError(f"npusim cannot lower the binding {binding.var.name_hint} "
                                   f"= {value}", "report the model to the npusim plugin")
    result = function.body.body
    outputs = [values[v] for v in (result.fields if isinstance(result, relax.Tuple) else [result])]
    symbol = str(function.attrs["global_symbol"])
    return te.create_prim_func([*params, *outputs]).with_attr("global_symbol", symbol)


def _lower_composite(composite: Any, args: list[Any], accumulator: str) -> Any:
    """A composite function is one Relax op (and, at most, aliases of its result)."""
    inner = dict(zip(composite.params, args, strict=True))
    for binding in composite.body.blocks[-1].bindings:
        value = binding.value
        if isinstance(value, relax.Call):
            operands = [inner[a] for a in value.args if not isinstance(a, relax.ShapeExpr)]
            inner[binding.var] = lower_op(value.op.name, operands, value.attrs,
                                          binding.var.ty, accumulator)
        else:
            inner[binding.var] = inner[value]
    return inner[composite.body.body]


def _placeholder(param: Any, index: int) -> Any:
    if not isinstance(param.ty, relax.TensorType) or param.ty.ndim < 0:
        raise CompileError(f"npusim region input '{param.name_hint}' is {param.ty}, not a "
                           "tensor of known rank", "report the model to the npusim plugin")
    return te.placeholder([int(d) for d in param.ty.shape], param.ty.dtype, f"in{index}")


@tvm.transform.module_pass(opt_level=0, name="AllClaimedOnNpu")
class AllClaimedOnNpu:
    """After RunCodegen, a device region may only call NPU kernels: anything else is a claim
    that npusim's patterns did not cover, and would silently run as TVM host code."""

    def transform_module(self, module: Any, _context: Any) -> Any:
        leftover = sorted({op for function in module.functions.values()
                           if isinstance(function, relax.Function)
                           for op in _ops_called(function)} - {"relax.call_dps_packed"})
        if leftover:
            raise CompileError(
                f"npusim claimed nodes whose lowering calls {', '.join(leftover)}, which no "
                "npusim kernel implements",
                "report the model to the npusim plugin; `xpuport inspect --backend npusim` "
                "shows the claimed nodes")
        return module


def _ops_called(function: Any) -> set[str]:
    found: set[str] = set()

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            found.add(expr.op.name)

    relax.analysis.post_order_visit(function.body, visit)
    return found
