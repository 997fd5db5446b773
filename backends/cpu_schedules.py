"""Default CPU schedules for the kernels TVM generates: parallel outer loops, vector inner ones.

TVM's default llvm pipeline leaves every generated kernel as a serial loop nest. These dlight
rules give each fused kernel a schedule without any tuning: dlight's own CPU rules for
reductions (softmax, layer norm) and GEMV first, then an injective rule (fuse the loop nest,
vectorize the innermost chunk, parallelize the rest when it is large enough to pay for the
thread pool's wake-up), then a fallback that parallelizes each block's outermost spatial loop.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import s_tir
from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline
from tvm.s_tir import dlight
from tvm.target.codegen import llvm_get_vector_width

# Below this many elements a kernel runs serially: waking the thread pool costs more.
PARALLEL_MIN_ELEMENTS = 16384


class Injective(dlight.ScheduleRule):  # type: ignore[misc]  # dlight is untyped
    """Elementwise and data-movement kernels: the trailing loops every operand walks
    contiguously (or not at all) fused and vectorized, everything else fused and parallel.

    Vectorizing a flat index over all loops would make each lane recompute a broadcast
    operand's index with division and modulo: a conv's bias add ran at 2 ns per element."""

    def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
        if not _cpu_kernel(func, target):
            return None
        sch = s_tir.Schedule(func)
        blocks = dlight.normalize_prim_func(sch)
        if blocks is None or not all(block.is_injective() for block in blocks):
            return None
        blocks = dlight.try_inline(sch, blocks)
        if len(blocks) != 1:
            return None
        loops = sch.get_loops(blocks[0].block_rv)
        if not loops:
            return None
        total = _size(sch, loops)
        # No common contiguous run (a transpose): vectorize the stores of the innermost loop.
        inner = _contiguous_suffix(sch, blocks[0], loops) or 1
        outer = loops[: len(loops) - inner]
        vector = sch.fuse(*loops[len(loops) - inner:])
        lanes, extent = _lanes(target), _extent(sch, vector)
        while extent is not None and lanes > 1 and extent % lanes:
            lanes //= 2
        if extent is not None and lanes > 1 and extent >= lanes:
            vector, lane = sch.split(vector, [None, lanes])
            sch.vectorize(lane)
        outer = [*outer, vector]
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if total is not None and total >= PARALLEL_MIN_ELEMENTS:
            sch.parallel(fused)
        return sch


def _contiguous_suffix(sch: Any, block: Any, loops: list[Any]) -> int:
    """How many trailing loops every buffer the block reads or writes indexes directly in
    its own trailing dimensions (or not at all): those fuse into one affine vector loop."""
    stmt = sch.get(block.block_rv)
    iters = list(stmt.iter_vars)
    realize = sch.get(loops[-1]).body
    if not isinstance(realize, s_tir.stmt.SBlockRealize) or len(iters) != len(loops) or not all(
        value.same_as(sch.get(loop).loop_var)
        for value, loop in zip(realize.iter_values, loops, strict=True)
    ):
        return 0  # iterators not bound one-to-one to the loops: no claim about strides
    regions = [*stmt.reads, *stmt.writes]
    for count in range(len(iters), 0, -1):
        if all(_walks(region, iters[len(iters) - count:]) for region in regions):
            return count
    return 0


def _walks(region: Any, trailing: list[Any]) -> bool:
    """The buffer's last indices are exactly the `trailing` iterators over whole dimensions
    (so that fusing them is one contiguous run), or it uses none of them (a broadcast)."""
    indices = [r.min for r in region.region]
    used = [any(_uses(index, it.var) for it in trailing) for index in indices]
    if not any(used):
        return True
    head = len(indices) - len(trailing)
    if head < 0 or any(used[:head]):
        return False
    shape = region.source.shape[head:]
    return all(
        index.same_as(it.var) and (k == 0 or _same_extent(dim, it.dom.extent))
        for k, (index, it, dim) in enumerate(zip(indices[head:], trailing, shape, strict=True))
    )


def _same_extent(dim: Any, extent: Any) -> bool:
    return isinstance(dim, tvm.tirx.IntImm) and isinstance(extent, tvm.tirx.IntImm) \
        and int(dim) == int(extent)


def _uses(expr: Any, var: Any) -> bool:
    return any(free.same_as(var) for free in tvm.tirx.analysis.undefined_vars(expr))


class ParallelOuter(dlight.ScheduleRule):  # type: ignore[misc]
    """Anything else (pooling, convolutions left to TVM): each block's outer spatial loop
    runs in parallel when the block is large."""

    def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
        if not _cpu_kernel(func, target):
            return None
        sch = s_tir.Schedule(func)
        blocks = dlight.normalize_prim_func(sch)
        if blocks is None:
            return None
        changed = False
        for block in blocks:
            loops = sch.get_loops(block.block_rv)
            spatial = [loop for loop, it in zip(loops, block.iters, strict=False)
                       if it.kind == "S"]
            if not loops or not spatial or spatial[0] != loops[0]:
                continue
            if (_size(sch, loops) or 0) >= PARALLEL_MIN_ELEMENTS:
                sch.parallel(loops[0])
                changed = True
        return sch if changed else None


class Guarded(dlight.ScheduleRule):  # type: ignore[misc]
    """One of dlight's rules, declining what it fails on: its GEMV rule asserts on some
    broadcasts (Sum of a 0-d and a 1-d tensor). The kernel then gets the next rule's schedule,
    or none; its result is the same either way."""

    def __init__(self, rule: Any) -> None:
        self.rule = rule

    def apply(self, func: Any, target: Any, tunable: bool) -> Any:
        try:
            return self.rule.apply(func, target, tunable)
        except (AssertionError, ValueError, IndexError, RuntimeError):
            return None


def _cpu_kernel(func: Any, target: Any) -> bool:
    # dlight's ApplyDefaultSchedule asks every rule, whatever the target.
    return isinstance(func, tvm.tirx.PrimFunc) and target.kind.name == "llvm"


def _extent(sch: Any, loop: Any) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tvm.tirx.IntImm) else None


def _size(sch: Any, loops: list[Any]) -> int | None:
    total = 1
    for loop in loops:
        extent = _extent(sch, loop)
        if extent is None:
            return None
        total *= extent
    return total


def _lanes(target: Any) -> int:
    """float32 lanes of a vector register on this target; LLVM splits wider vectors."""
    bits = llvm_get_vector_width(target)
    return max(1, bits // 32) if bits > 0 else 1


def fusion_passes(target: Any) -> list[Any]:
    """TVM's CPU passes up to fused kernels: what tuning sees and records apply to."""
    return [*cpu_pipeline.library_dispatch_passes(target), *cpu_pipeline.legalize_passes(target)]


def cpu_pipeline_with_schedules(target: Any, before_schedules: list[Any],
                                schedules: bool = True) -> Any:
    """TVM's default CPU pipeline with `before_schedules` (applying tuning records) and the
    default schedules between fusion and lowering (kernels with records keep theirs)."""
    rules = [Guarded(dlight.cpu.Reduction()), Guarded(dlight.cpu.GEMV()), Injective(),
             ParallelOuter()]
    scheduling = [dlight.ApplyDefaultSchedule(*rules)] if schedules else []

    @tvm.transform.module_pass(opt_level=0, name="xpuport.CpuPipeline")  # type: ignore[untyped-decorator]
    def pipeline(module: Any, _context: Any) -> Any:
        with target:
            passes = [
                *fusion_passes(target),
                *before_schedules,
                *scheduling,
                *cpu_pipeline.dataflow_lower_passes(target),
                *cpu_pipeline.finalize_passes(target),
            ]
            return tvm.transform.Sequential(passes)(module)

    return pipeline

