"""Default CPU schedules for the kernels TVM generates: parallel outer loops, vector inner ones.

TVM's default llvm pipeline leaves every generated kernel as a serial loop nest. These dlight
rules give each fused kernel a schedule without any tuning: a row-reduction rule for softmax
and normalizations (rows in parallel, each reduction over vector accumulators), then dlight's
own CPU rules for what it declines and for GEMV, then an injective rule (fuse the loop nest,
vectorize the innermost chunk, tile transposes, parallelize the rest when it is large enough
to pay for the thread pool's wake-up), then a fallback that parallelizes each block's
outermost spatial loop.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import s_tir
from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline
from tvm.s_tir import dlight
from tvm.target.codegen import llvm_get_vector_width

from xpuport.backends.cpu_conv_schedule import DirectConv
from xpuport.backends.cpu_gemm_schedule import DirectGemm
from xpuport.backends.cpu_prepack import fold_prepacked, mark_constant_operands

# Below this many elements a kernel runs serially: waking the thread pool costs more.
PARALLEL_MIN_ELEMENTS = 16384
# A transpose is copied in tiles this many output elements wide: a d256 encoder's K^T copy
# (8x128x768 read along its outer axis) took 0.9 ms untiled, 0.09 ms in tiles of 8 and 0.2 ms
# in tiles of 16, where each tile's rows no longer share the TLB's pages.
TRANSPOSE_TILE = 8


class RowReduction(dlight.ScheduleRule):  # type: ignore[misc]  # dlight is untyped
    """Softmax, layer norm and the like: reductions along the rows' last axis, then an
    elementwise block, all under one parallel loop over the rows. Each reduction sums into
    a vector of partial results (rfactor) that one short loop folds at the end: a serial
    float sum waits for every add, and LLVM may not reorder it. dlight's CPU rule does the
    rest alike but leaves the sums serial: a 1024x256 layer norm took 0.62 ms, 0.10 with
    vector sums."""

    def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
        if not _cpu_kernel(func, target):
            return None
        sch = s_tir.Schedule(func)
        blocks = dlight.normalize_prim_func(sch)
        if not _rows_then_elementwise(blocks):
            return None
        blocks = _inline_single_use(sch, blocks)
        rows = min(len(kind) - len(kind.lstrip("S")) for kind in (b.dom_kind() for b in blocks))
        lanes = _lanes(target)
        partials = [_vector_partials(sch, b.block_rv, lanes) for b in blocks[:-1]
                    if b.dom_kind().endswith("R") and _plain_reduction(sch.get(b.block_rv))]
        ordered = sch.get_child_blocks(sch.get_sblock("root"))
        loops = sch.get_loops(ordered[-1])
        row = sch.fuse(*loops[:rows]) if rows > 1 else loops[0]
        sch.parallel(row)
        for block in reversed(ordered[:-1]):
            sch.compute_at(block, row, preserve_unit_loops=True)
        names = {sch.get(p).name_hint for p in partials if p is not None}
        for block in ordered:
            stmt = sch.get(block)
            if stmt.name_hint in names:
                _vectorize_partials(sch, block)
            elif all(it.iter_type == tvm.tirx.IterVar.DataPar for it in stmt.iter_vars):
                _vectorize_innermost(sch, block, lanes)
        return sch


def _rows_then_elementwise(blocks: Any) -> bool:
    """At least one reduction, an elementwise block last, every block led by the rows."""
    if blocks is None or len(blocks) < 2 or not blocks[-1].is_injective():
        return False
    kinds = [b.dom_kind() for b in blocks]
    return any(not b.is_injective() for b in blocks) and all(k.startswith("S") for k in kinds)


def _inline_single_use(sch: Any, blocks: Any) -> Any:
    """Elementwise steps read by one block only computed where they are read: softmax's
    x - max, stored and re-read, made a 8x4x128x128 softmax take 0.87 ms instead of 0.40."""
    for block in blocks[:-1]:
        if block.is_injective() and len(sch.get_consumers(block.block_rv)) == 1:
            sch.compute_inline(block.block_rv)
    return dlight.normalize_prim_func(sch)


def _plain_reduction(block: Any) -> bool:
    """A sum, max or min into one buffer: partial results combine in any order. (An argmax
    writes two buffers, and its ties must resolve to the first index.)"""
    store = block.body
    return len(block.writes) == 1 and isinstance(store, tvm.tirx.BufferStore) and \
        isinstance(store.value, (tvm.tirx.Add, tvm.tirx.Max, tvm.tirx.Min))


def _vector_partials(sch: Any, block: Any, lanes: int) -> Any | None:
    """Split the reduction's last loop by `lanes` and reduce each lane apart (rfactor); the
    partial-sum block, or None when the extent does not split (the sum stays serial)."""
    loops = sch.get_loops(block)
    extent = _extent(sch, loops[-1])
    if extent is None or extent % lanes or extent < 2 * lanes:
        return None
    _, lane = sch.split(loops[-1], [None, lanes])
    return sch.rfactor(lane, factor_axis=len(loops) - 1)


def _vectorize_partials(sch: Any, block: Any) -> None:
    """The partial-sum block's lane loop innermost and vectorized, its initialization split
    out (and vectorized) ahead of the reduction loop."""
    stmt = sch.get(block)
    loops = sch.get_loops(block)
    values = sch.get(loops[-1]).body.iter_values
    lane, reduction = (next(loop for loop in loops if sch.get(loop).loop_var.same_as(values[k]))
                       for k in (0, len(stmt.iter_vars) - 1))  # rfactor puts the lane first
    sch.reorder(reduction, lane)
    sch.vectorize(lane)
    init = sch.decompose_reduction(block, reduction)
    sch.vectorize(sch.get_loops(init)[-1])


def _vectorize_innermost(sch: Any, block: Any, lanes: int) -> None:
    """The block's innermost loop under the (parallel) row loop, vectorized."""
    loops = sch.get_loops(block)
    extent = _extent(sch, loops[-1]) if len(loops) > 1 else None
    if extent is None or extent < 2:
        return
    if extent > lanes and extent % lanes == 0:
        _, lane = sch.split(loops[-1], [None, lanes])
        sch.vectorize(lane)
    elif extent <= lanes:
        sch.vectorize(loops[-1])


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
        inner = _contiguous_suffix(sch, blocks[0], loops)
        if inner == 0:
            along = _input_contiguous_loop(sch, blocks[0], loops)
            if along is not None and (_tile_transpose(sch, loops, along, total)
                                      or _short_row_transpose(sch, loops, along, total, target)):
                return sch
        # No common contiguous run and no tile: vectorize the stores of the innermost loop.
        inner = inner or 1
        outer = loops[: len(loops) - inner]
        vector = sch.fuse(*loops[len(loops) - inner:])
        lanes, extent = _lanes(target), _extent(sch, vector)
        while extent is not None and lanes > 1 and extent % lanes:
            lanes //= 2
        if extent is not None and lanes > 1 and extent >= lanes:
            vector, lane = sch.split(vector, [None, lanes])
            sch.vectorize(lane)
            outer = [*outer, vector]
        elif not outer:
            outer = [vector]
        # else a run too short or odd to vectorize stays a serial loop inside the parallel
        # one: fused into it, every element computed its indices by division and modulo
        # (a copy of 1x3x224x224 elements in runs of 3 took 186 us so, 34 us apart).
        _parallel_if_large(sch, outer, total)
        return sch


def _tile_transpose(sch: Any, loops: list[Any], along: int, total: int | None) -> bool:
    """A copy whose output's innermost loop strides through an input (a transpose): tile the
    output's innermost loop by TRANSPOSE_TILE and run, inside each tile, the loop `along`
    which that input is contiguous, so a tile's reads come from TRANSPOSE_TILE rows only."""
    extent = _extent(sch, loops[-1])
    if extent is None or extent % TRANSPOSE_TILE or extent == TRANSPOSE_TILE:
        return False
    tiles, lane = sch.split(loops[-1], [None, TRANSPOSE_TILE])
    outer = [loop for k, loop in enumerate(loops[:-1]) if k != along]
    sch.reorder(*outer, tiles, loops[along], lane)
    sch.vectorize(lane)
    _parallel_if_large(sch, [*outer, tiles], total)
    return True


def _short_row_transpose(sch: Any, loops: list[Any], along: int, total: int | None,
                         target: Any) -> bool:
    """A copy whose output rows are shorter than a vector (an image's NCHW -> NHWC copy
    writes rows of 3 channels): read along the loop an input is contiguous in, a vector at
    a time, with the short row unrolled around it (the stores stride). An 8x3x224x224 image
    took 660-820 us with each row a serial loop, 164 us so (149 us in 8 lanes, 170 in 32)."""
    row, run, lanes = _extent(sch, loops[-1]), _extent(sch, loops[along]), _lanes(target)
    if row is None or run is None or row >= lanes:
        return False
    width = lanes
    while width > 1 and run % width:
        width //= 2
    if width < min(lanes, 4):
        return False
    reads, lane = sch.split(loops[along], [None, width])
    outer = [loop for k, loop in enumerate(loops[:-1]) if k != along]
    sch.reorder(*outer, reads, loops[-1], lane)
    sch.unroll(loops[-1])
    sch.vectorize(lane)
    _parallel_if_large(sch, outer or [reads], total)
    return True


def _parallel_if_large(sch: Any, loops: list[Any], total: int | None) -> None:
    """`loops` fused into one, run in parallel where the kernel has PARALLEL_MIN_ELEMENTS."""
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    if total is not None and total >= PARALLEL_MIN_ELEMENTS:
        sch.parallel(fused)


def _input_contiguous_loop(sch: Any, block: Any, loops: list[Any]) -> int | None:
    """The deepest loop (not the innermost) that a read's last index uses, for the first
    read whose last index does not use the innermost loop but another index does."""
    iters = _one_iterator_per_loop(sch, block, loops)
    if iters is None:
        return None
    for region in sch.get(block.block_rv).reads:
        indices = [r.min for r in region.region]
        if not indices or _uses(indices[-1], iters[-1]):
            continue
        if not any(_uses(index, iters[-1]) for index in indices[:-1]):
            continue  # a broadcast along the innermost loop: nothing strided
        used = [k for k, var in enumerate(iters[:-1]) if _uses(indices[-1], var)]
        if used:
            return used[-1]
    return None


def _one_iterator_per_loop(sch: Any, block: Any, loops: list[Any]) -> list[Any] | None:
    """The block's iterator variables, when each is bound to its own loop in order."""
    iters = list(sch.get(block.block_rv).iter_vars)
    realize = sch.get(loops[-1]).body
    if not isinstance(realize, s_tir.stmt.SBlockRealize) or len(iters) != len(loops) or not all(
        value.same_as(sch.get(loop).loop_var)
        for value, loop in zip(realize.iter_values, loops, strict=True)
    ):
        return None
    return [it.var for it in iters]


def _contiguous_suffix(sch: Any, block: Any, loops: list[Any]) -> int:
    """How many trailing loops every buffer the block reads or writes indexes directly in
    its own trailing dimensions (or not at all): those fuse into one affine vector loop."""
    stmt = sch.get(block.block_rv)
    iters = list(stmt.iter_vars)
    if _one_iterator_per_loop(sch, block, loops) is None:
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


# What ColumnReduction vectorizes: LLVM failed to build its bfloat16 sums.
_VECTOR_SUM_DTYPES = frozenset({"float32", "float64"})


class ColumnReduction(dlight.ScheduleRule):  # type: ignore[misc]  # dlight is untyped
    """Sums over leading axes of a tensor whose last axis is kept, as NHWC's global pooling:
    the kept axis innermost and vectorized, the sums' loops outside it, so every read is
    contiguous. Scheduled as the other reductions, parallel over each output element, the
    mean of an 8x28x28x32 NHWC tensor read one cache line per element: 258 us."""

    def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
        if not _cpu_kernel(func, target):
            return None
        sch = s_tir.Schedule(func)
        blocks = dlight.normalize_prim_func(sch)
        if blocks is None or len(blocks) > 2 or blocks[0].is_injective() or \
                not all(b.is_injective() for b in blocks[1:]):
            return None
        block = blocks[0]
        if any(str(r.source.dtype) not in _VECTOR_SUM_DTYPES
               for r in sch.get(block.block_rv).writes):
            return None
        loops = sch.get_loops(block.block_rv)
        iters = _one_iterator_per_loop(sch, block, loops)
        if iters is None:
            return None
        kinds = [it.iter_type for it in sch.get(block.block_rv).iter_vars]
        kept = [k for k, kind in enumerate(kinds) if kind == tvm.tirx.IterVar.DataPar]
        summed = [k for k, kind in enumerate(kinds) if kind == tvm.tirx.IterVar.CommReduce]
        if not kept or not summed or len(kept) + len(summed) != len(kinds) \
                or not _reads_along(sch.get(block.block_rv).reads, iters[kept[-1]]):
            return None
        kept, summed = [loops[k] for k in kept], [loops[k] for k in summed]
        sch.reorder(*kept[:-1], *summed, kept[-1])
        if len(blocks) == 2 and len(kept) > 1:
            sch.reverse_compute_at(blocks[1].block_rv, kept[-2])
        total = _size(sch, loops)
        if len(kept) > 1 and total is not None and total >= PARALLEL_MIN_ELEMENTS:
            sch.parallel(sch.fuse(*kept[:-1]) if len(kept) > 2 else kept[0])
        _vectorize_innermost(sch, block.block_rv, _lanes(target))
        return sch


def _reads_along(reads: Any, inner: Any) -> bool:
    """Whether every read indexes its last dimension by `inner`, and no other by it."""
    return bool(reads) and all(
        len(r.region) > 0 and r.region[-1].min.same_as(inner)
        and not any(_uses(d.min, inner) for d in r.region[:-1]) for r in reads)


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
    """float32 lanes the schedules vectorize by; LLVM splits wider vectors into registers.

    TVM 0.27's llvm_get_vector_width reports 512 bits for every x86 target, AVX-512 or not,
    so this is 16 there: two AVX2 registers, four SSE ones. Kept, as measured: with the
    register's own width (8 lanes on AVX2, from the target's features) TVM's kernels took
    longer in every model tried (AVX2 host, 4 alternating rounds each): d256 encoder at batch
    8 5.6-6.2 ms against 4.2-5.4, at batch 1 0.87-0.93 against 0.70-0.72, bert-like at batch
    1 1.8-2.0 against 1.5-1.7, the small CNN at batch 8 1.2-1.4 against 0.6-0.8."""
    bits = llvm_get_vector_width(target)
    return max(1, bits // 32) if bits > 0 else 1


def fusion_passes(target: Any) -> list[Any]:
    """TVM's CPU passes up to fused kernels: what tuning sees and records apply to. The
    kernels' constant parameters are marked (backends/cpu_prepack.py), so that DirectGemm and
    MetaSchedule's own candidates alike pack constant operands once, and tuning times
    candidates and default schedules as compile will run them: on the packed copy."""
    return [*cpu_pipeline.library_dispatch_passes(target), *cpu_pipeline.legalize_passes(target),
            canonical_block_names, mark_constant_operands()]


@tvm.transform.module_pass(opt_level=0, name="xpuport.CanonicalBlockNames")  # type: ignore[untyped-decorator]
def canonical_block_names(module: Any, _context: Any) -> Any:
    """Name every kernel's blocks b0, b1... in order. Block names come from the model's value
    names (a layer norm's `x_sum` in one model is `lv7_sum` in another), structural equality
    ignores them, and MetaSchedule's records find blocks by name: a database shared by two
    such models stored one model's kernel with the other's records, which no longer loaded."""
    renamed = module.clone()  # a pass must not change the module it was given
    for gv, func in module.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc) and isinstance(func.body, s_tir.SBlockRealize):
            renamed.update_func(gv, _renamed_blocks(func))
    return renamed


def _renamed_blocks(func: Any) -> Any:
    sch = s_tir.Schedule(func)
    # The root keeps its name: "root", or the op's for kernels topi writes as loops in one
    # opaque block (CumSum's "cumsum_generic", TopK, ScatterElements).
    pending = list(sch.get_child_blocks(sch.get_sblock(func.body.block.name_hint)))
    count = 0
    while pending:
        block = pending.pop(0)
        old = sch.get(block)
        new = s_tir.SBlock(old.iter_vars, old.reads, old.writes, f"b{count}", old.body, old.init,
                           old.alloc_buffers, old.match_buffers, old.annotations)
        sch.state.replace(sch.get_sref(block), new, {old: new})
        pending.extend(sch.get_child_blocks(block))
        count += 1
    return sch.mod["main"]


def default_schedules() -> Any:
    """The pass that schedules every kernel not yet scheduled (by a tuning record)."""
    return dlight.ApplyDefaultSchedule(DirectConv(), DirectGemm(), Guarded(ColumnReduction()),
                                       Guarded(RowReduction()),
                                       Guarded(dlight.cpu.Reduction()),
                                       Guarded(dlight.cpu.GEMV()), Injective(), ParallelOuter())


def cpu_pipeline_with_schedules(target: Any, before_schedules: list[Any],
                                schedules: bool = True) -> Any:
    """TVM's default CPU pipeline with `before_schedules` (applying tuning records) and the
    default schedules between fusion and lowering (kernels with records keep theirs), then
    the packing of constant operands, a record's or a default schedule's, run at compile
    time (backends/cpu_prepack.py)."""
    scheduling = [default_schedules(), fold_prepacked] if schedules else [fold_prepacked]

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

