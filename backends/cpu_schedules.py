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
    """Elementwise and data-movement kernels: one fused loop, vectorized and parallel."""

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
        fused = sch.fuse(*loops)
        extent = _extent(sch, fused)
        lanes = _lanes(target)
        if extent is not None and lanes > 1 and extent % lanes == 0 and extent >= lanes:
            outer, inner = sch.split(fused, [None, lanes])
            sch.vectorize(inner)
            fused = outer
        if extent is not None and extent >= PARALLEL_MIN_ELEMENTS:
            sch.parallel(fused)
        return sch


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

