"""Library dispatch: route a Relax module's heavy ops to vendor libraries through packed functions.

A backend names, per op, the library that runs it (`Library`); this pass rewrites each eligible
call into `R.call_dps_packed("xpuport.<device>.<library>.<op>", args, out)` and leaves every
other op to TVM, which generates and fuses it. The kernels themselves are Python packed
functions registered under those names (backends/host_kernels.py, backends/cuda_kernels.py),
so an artifact only runs where they are registered: `missing_functions` says which are not.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from xpuport.lowering.collect import collecting, note

PREFIX = "xpuport."
_CALL_NAME = re.compile(r"\bcall\s+(xpuport\.\w+\.\w+\.\w+)\b")


@dataclass(frozen=True)
class Library:
    """One library's share of a backend's ops: which op, in which dtypes, on which device."""

    device: str  # "cpu", "cuda"
    name: str  # "numpy", "torch", "cupy"
    op: str  # "matmul", "batch_matmul", "conv2d" (see op_kind)
    dtypes: frozenset[str]
    # The kernel returns a tensor it allocated (shared through DLPack), instead of writing
    # into one TVM allocated: saves a copy where the library has no out= form (torch conv).
    allocates: bool = False
    # GEMMs of fewer multiply-adds go to the next library for the op (see eligible).
    min_macs: int = 0
    # conv2d's activation layout: NCHW (weights OIHW) or NHWC (weights OHWI); see
    # lowering/channels_last.py for what moves a model's convolutions to NHWC.
    layout: str = "NCHW"

    @property
    def function(self) -> str:
        suffix = "" if self.layout == "NCHW" else f"_{self.layout.lower()}"
        return f"{PREFIX}{self.device}.{self.name}.{self.op}{suffix}"

    @property
    def abi(self) -> str:
        """The function and its calling convention: part of the backend's cache key."""
        convention = "returns" if self.allocates else "dps"
        threshold = f":macs>={self.min_macs}" if self.min_macs else ""
        return f"{self.function}:{convention}{threshold}"


_MATMUL = "relax.matmul"
_CONV2D = "relax.nn.conv2d"
# (data, kernel, output) layouts of a conv2d a library of each layout takes.
_CONV_LAYOUTS = {"NCHW": ("NCHW", "OIHW", "NCHW"), "NHWC": ("NHWC", "OHWI", "NHWC")}
_NORMALIZATIONS = {"relax.nn.layer_norm": "layer_norm", "relax.nn.softmax": "softmax"}


def dispatch_pass(libraries: Iterable[Library]) -> Any:
    """A module pass that rewrites each op some library takes into a call of its kernel: the
    first library listed for the op that takes the call (dtypes, shapes, size)."""
    by_kind: dict[str, list[Library]] = {}
    for library in libraries:
        by_kind.setdefault(library.op, []).append(library)

    @tvm.transform.module_pass(opt_level=0, name="xpuport.DispatchToLibrary")  # type: ignore[untyped-decorator]
    def dispatch(module: Any, _context: Any) -> Any:
        rewriter = _Rewriter(module)
        rewriter.by_kind = by_kind
        return rewrite_relax_functions(module, rewriter)

    return dispatch


def rewrite_relax_functions(module: Any, rewriter: Any) -> Any:
    """`module` with each Relax function passed through `rewriter` (a PyExprMutator built
    on `module`); PrimFuncs stay as they are."""
    for global_var, function in module.functions.items():
        if isinstance(function, relax.Function):
            rewriter.builder_.update_func(global_var, rewriter.visit_expr(function))
    return rewriter.builder_.get()


def op_kind(call: Any) -> str | None:
    """matmul (one operand a matrix: flattens to one GEMM), batch_matmul (both batched), conv2d,
    layer_norm, softmax."""
    name = call.op.name if isinstance(call.op, tvm.ir.Op) else ""
    if name in _NORMALIZATIONS:
        return _NORMALIZATIONS[name]
    if name == _CONV2D:
        return "conv2d"
    if name != _MATMUL:
        return None
    ranks = [len(arg.ty.shape) if static_shape(arg.ty) else 0 for arg in call.args]
    return "batch_matmul" if min(ranks) >= 3 else "matmul"


@mutator
class _Rewriter(PyExprMutator):  # type: ignore[misc]  # TVM's mutator base is untyped
    by_kind: Mapping[str, list[Library]]

    def visit_call_(self, call: Any) -> Any:
        call = super().visit_call_(call)
        kind = op_kind(call)
        candidates = self.by_kind.get(kind, []) if kind else []
        library = next((lib for lib in candidates if eligible(call, lib)), None)
        if library is None:
            return call
        extra = _attributes(call, library.op)
        if library.allocates:
            return relax.op.call_pure_packed(library.function, *call.args, *extra,
                                             ty_args=call.ty)
        return relax.op.call_dps_packed(
            library.function, relax.Tuple([*call.args, *extra]), call.ty
        )


def eligible(call: Any, library: Library) -> bool:
    """Static shapes and the library's dtypes; matmul on matrices, conv2d in the library's
    layout, normalizations over the last axis."""
    types = [arg.ty for arg in call.args] + [call.ty]
    if not all(isinstance(t, relax.TensorType) and static_shape(t) for t in types):
        return False
    if any(str(t.dtype) not in library.dtypes for t in types):
        return False
    if library.op in ("matmul", "batch_matmul"):
        return all(len(t.shape) >= 2 for t in types) and matmul_macs(call) >= library.min_macs
    if library.op in ("layer_norm", "softmax"):
        return _over_last_axis(call)
    attrs = call.attrs
    layouts = (attrs.data_layout, attrs.kernel_layout, attrs.out_layout or attrs.data_layout)
    return layouts == _CONV_LAYOUTS[library.layout] and not attrs.out_dtype


def channels_axis(layout: str) -> int:
    """Where a conv2d's activations keep their channels in `layout` (NCHW or NHWC)."""
    return layout.index("C")


def _over_last_axis(call: Any) -> bool:
    """Softmax over the last axis; layer norm over the last axis, with scale and shift."""
    rank = len(call.ty.shape)
    attrs = call.attrs
    if call.op.name == "relax.nn.softmax":
        return int(attrs.axis) in (-1, rank - 1)
    axes = [int(a) for a in attrs.axes]
    return axes in ([-1], [rank - 1]) and bool(attrs.center) and bool(attrs.scale)


def _attributes(call: Any, op: str) -> list[Any]:
    """The op's attributes a kernel needs, as trailing arguments."""
    if op == "conv2d":
        return conv2d_attributes(call)
    if op == "layer_norm":
        return [relax.prim_value(tvm.tirx.FloatImm("float64", float(call.attrs.epsilon)))]
    return []


def matmul_macs(matmul: Any) -> int:
    """Multiply-adds of a matmul: the result's elements times the contracted extent."""
    left = matmul.args[0].ty.shape
    return math.prod(int(d) for d in matmul.ty.shape.values) * int(left[-1])


def static_shape(tensor_type: Any) -> bool:
    shape = tensor_type.shape
    return shape is not None and all(isinstance(d, tvm.tirx.IntImm) for d in shape.values)


def conv2d_attributes(call: Any) -> list[Any]:
    """strides (2), padding (top, left, bottom, right), dilation (2), groups, as int64 args."""
    attrs = call.attrs
    values = [*attrs.strides, *attrs.padding, *attrs.dilation, attrs.groups]
    return [relax.prim_value(tvm.tirx.IntImm("int64", int(v))) for v in values]


def op_calls(module: Any) -> list[Any]:
    """Every call of an operator in the Relax functions of `module`."""
    calls: list[Any] = []

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            calls.append(expr)

    for function in module.functions.values():
        if isinstance(function, relax.Function):
            relax.analysis.post_order_visit(function, visit)
    return calls


def has_op(module: Any, op_name: str) -> bool:
    """Whether any Relax function of `module` calls the operator `op_name`."""
    return any(call.op.name == op_name for call in op_calls(module))


def largest_matmul_macs(module: Any) -> int:
    """The multiply-adds of the largest statically shaped matmul of `module` (0 if none)."""
    return max((matmul_macs(call) for call in op_calls(module)
                if op_kind(call) in ("matmul", "batch_matmul")
                and all(static_shape(t) for t in (call.ty, call.args[0].ty))), default=0)


def library_calls(executable: Any) -> dict[str, int]:
    """How many times the built VM executable calls each xpuport library kernel."""
    return dict(Counter(_CALL_NAME.findall(executable.as_text())))


def missing_functions(names: Iterable[str]) -> list[str]:
    """The library kernels among `names` that are not registered in this process."""
    return sorted(n for n in names if tvm_ffi.get_global_func(n, allow_missing=True) is None)


def packed_calls(module: Any) -> Iterator[tuple[str, Any]]:
    """Each call of a packed function in `module`'s Relax functions: its name and the call."""
    for call in op_calls(module):
        if call.op.name in ("relax.call_dps_packed", "relax.call_pure_packed") and \
                isinstance(call.args[0], relax.ExternFunc):
            yield str(call.args[0].global_symbol), call


_THREAD_POOLS: ContextVar[list[str] | None] = ContextVar("xpuport_thread_pools", default=None)


def collecting_thread_pools() -> AbstractContextManager[list[str]]:
    """The host thread pools (a library's name) that the library kernels of the builds run
    inside start: a backend notes them as it dispatches (note_thread_pools)."""
    return collecting(_THREAD_POOLS)


def note_thread_pools(pools: Iterable[str]) -> None:
    note(_THREAD_POOLS, pools)
