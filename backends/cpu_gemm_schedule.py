"""The default CPU schedule of a matrix multiplication TVM generates: register-blocked GEMM.

GEMMs stay in TVM where no other heavy op of the model needs a library's thread pool
(lowering/tvm_kernels.py). Each step of the reduction broadcasts one element of A to
ROWS accumulator rows and multiplies it by one vector of B's columns; the accumulators
stay in registers, and the epilogue (bias, GELU, residual add) is applied as they are
stored. Each block of B's columns is first copied into a contiguous buffer (packed, as
BLAS libraries pack), once per block: B's rows 4 KB apart (1024 float32 columns) fall into
the same cache sets, and a 128x256x1024 GEMM ran at 76 GFLOP/s unpacked, 177 packed. A
constant B (a layer's weights) is packed at compile time instead, all of it, column block
after column block (backends/cpu_prepack.py). On the 2-core AVX2 host the encoders' GEMMs
ran at 175-192 GFLOP/s on two threads, where numpy's OpenBLAS reached 147-178 in the same
runs.
"""

from __future__ import annotations

import math
from typing import Any

import tvm
from tvm.s_tir import dlight

from xpuport.backends.cpu_conv_schedule import (
    PARALLEL_MIN_OUTPUTS,
    has_avx512,
    inline_on_store,
    schedule_found,
)
from xpuport.backends.cpu_prepack import LAYOUT_FREE, PREPACK

# Rows of A per step: ROWS x (vector lanes / 8) AVX2 accumulators. 6 rows (12 registers)
# took 188-202 GFLOP/s on the encoders' shapes, 4 rows 157-164 (two threads).
ROWS = 6


class DirectGemm(dlight.ScheduleRule):  # type: ignore[misc]  # dlight is untyped
    """Out[..., i, j] = sum_k A[..., i, k] * B[..., k, j] in float32, elementwise blocks
    after it: columns vectorized, ROWS rows per step, B's column block packed, the epilogue
    applied on store, batches and column blocks in parallel."""

    def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
        return schedule_found(func, target, _the_gemm,
                              lambda sch, blocks, gemm, lanes: _schedule(
                                  sch, blocks, gemm, step_columns(lanes, has_avx512(target))))


def step_columns(lanes: int, avx512: bool) -> int:
    """Columns of B per step: ROWS times their vectors is how many accumulators stay in
    registers. TVM 0.27 gives 16 float32 lanes for every x86 target, two AVX2 registers:
    12 accumulators of AVX2's 16 registers. AVX-512 has 32 registers of 16 lanes, so a
    step there takes 4 of them (24 accumulators): on the 2-core Sapphire Rapids host the
    d768 encoder at batch 1 (all its GEMMs in TVM, untuned) took 19.1 ms in steps of 16
    columns, 14.4-14.9 in steps of 32, 13.2 in steps of 64, against onnxruntime's 13.9-14.6
    in the same runs; 12 rows of 32 columns took 22.3."""
    return 4 * lanes if avx512 else lanes


def _the_gemm(sch: Any, blocks: list[Any]) -> tuple[Any, int] | None:
    """The kernel's one GEMM block and which of its reads is B, every other block
    elementwise after it."""
    reductions = [b for b in blocks if any(
        it.iter_type != tvm.tirx.IterVar.DataPar for it in sch.get(b).iter_vars)]
    if len(reductions) != 1 or blocks[0] != reductions[0]:
        return None
    block = reductions[0]
    stmt = sch.get(block)
    *spatial, k = stmt.iter_vars
    loops = sch.get_loops(block)
    if len(spatial) < 2 or k.iter_type != tvm.tirx.IterVar.CommReduce or \
            len(loops) != len(stmt.iter_vars) or len(stmt.writes) != 1 or \
            str(stmt.writes[0].source.dtype) != "float32" or \
            not all(isinstance(sch.get(loop).extent, tvm.tirx.IntImm) for loop in loops):
        return None
    if not _vectorizable(int(sch.get(loops[len(spatial) - 1]).extent)):
        return None
    i, j = spatial[-2].var, spatial[-1].var
    out = [r.min for r in stmt.writes[0].region]
    if len(out) != len(spatial) or not all(
            x.same_as(v.var) for x, v in zip(out, spatial, strict=True)):
        return None
    reads = [r for r in stmt.reads if not r.source.same_as(stmt.writes[0].source)]
    a = [n for n, r in enumerate(reads) if _ends_with(r, i, k.var)]
    b = [n for n, r in enumerate(reads) if _ends_with(r, k.var, j)]
    if len(reads) != 2 or len(a) != 1 or len(b) != 1 or a == b:
        return None
    index = next(n for n, r in enumerate(stmt.reads) if r.source.same_as(reads[b[0]].source))
    return block, index


def _vectorizable(columns: int) -> bool:
    """Whether the columns split into whole vectors (of 4 lanes or more), or fit in one."""
    return columns % 4 == 0 or columns <= 16


def _ends_with(region: Any, *variables: Any) -> bool:
    """The buffer's last indices are `variables`, and its others use none of them."""
    indices = [r.min for r in region.region]
    head, tail = indices[:-len(variables)], indices[-len(variables):]
    return len(indices) >= len(variables) and all(
        x.same_as(v) for x, v in zip(tail, variables, strict=True)) and not any(
        any(free.same_as(v) for v in variables)
        for x in head for free in tvm.tirx.analysis.undefined_vars(x))


def _reads_batched(block: Any, b_index: int) -> bool:
    """Whether B's indices use any of the block's batch iterators (a batch of matrices)."""
    batch = [it.var for it in block.iter_vars[:-3]]
    return any(free.same_as(v) for r in block.reads[b_index].region
               for free in tvm.tirx.analysis.undefined_vars(r.min) for v in batch)


def _fold_batch(rows: int) -> bool:
    """Whether a batch of `rows`-row matrices sharing one B is folded into one tall GEMM.

    Folded, the row steps must align with the matrices (a [128, 8, 256] input in steps of 6
    indexed A by division and modulo, which LLVM could not unroll: 72-76 GFLOP/s, against
    152-157 in steps of 4), so 128-row matrices went in steps of 4. Matrices of ROWS x 4
    rows or more that are no multiple of ROWS keep their batch loop instead, each in steps
    of ROWS with a partial last one: the d768 encoder's FFN GEMMs on [1, 128, 3072] took
    4.9-5.4 ms that way, 7.4-7.6 ms in steps of 4, and the d256 encoder's and BERT-like
    model's [1 or 8, 128, K] GEMMs 0-25% less (interleaved runs on the 2-core AVX2 host)."""
    return rows % ROWS == 0 or rows < 4 * ROWS


def _layout_free(sch: Any, block: Any, b_index: int) -> bool:
    """Whether B is a parameter every caller passes a constant for (marked by
    backends/cpu_prepack.mark_constant_operands), which may then be packed once, at compile
    time."""
    func = sch.mod["main"]
    free = func.attrs.get(LAYOUT_FREE, []) if func.attrs is not None else []
    source = sch.get(block).reads[b_index].source
    return len(source.shape) == 2 and any(func.params[int(n)].same_as(source) for n in free)


def _prepack(sch: Any, block: Any, b_index: int, lanes: int) -> None:
    """B copied into column blocks [N / lanes, K, lanes] by a block relax splits off and folds
    (SplitLayoutRewritePreproc, FoldConstant): each column block is then contiguous in memory,
    where packing it per call read K rows 3-12 KB apart, each in another page (the hardware
    prefetchers stop at pages). Interleaved on two threads, the encoders' GEMMs took (ms)
    128x768x3072 7.6 against 9.2 packed per call, 128x3072x768 5.5 / 6.0, 128x768x768
    1.11 / 1.22, 1024x768x3072 35.5 / 38.6."""
    packed = sch.cache_read(block, b_index, "global")
    sch.transform_layout(packed, ("write", 0),
                         lambda k, j: (j // lanes, k, j % lanes))
    sch.annotate(packed, PREPACK, True)


# Parallel iterations a parallel GEMM keeps, where a narrower step gives them: a
# [1024, 768] x [768, 64] GEMM in one block of 64 columns ran on one thread, 0.59 ms, in
# two of 32 on two, 0.34 ms (onnxruntime 0.33); [1024, 768] x [768, 128] took 0.61 ms in two
# blocks of 64 and 0.68 in four of 32 (the 2-core Sapphire Rapids host).
PARALLEL_BLOCKS = 2


def _column_step(columns: int, width: int, batches: int) -> int:
    """The widest step of at most `width` columns that splits them into whole vectors, or
    all of them where none does; narrowed (to no fewer than 16 columns) where that keeps
    PARALLEL_BLOCKS iterations of the parallel loop, `batches` of the batch's with each
    column block (0: the kernel runs serially)."""
    fits = [v for v in (width, width // 2, width // 4, 8, 4) if v >= 4 and columns % v == 0]
    parallel = [v for v in fits if v >= 16 and batches * (columns // v) >= PARALLEL_BLOCKS]
    return (parallel or fits or [columns])[0] if batches else (fits or [columns])[0]


def _schedule(sch: Any, blocks: list[Any], gemm: tuple[Any, int], width: int) -> None:
    block, b_index = gemm
    *batch, i, j, k = sch.get_loops(block)
    outputs = math.prod(int(sch.get(loop).extent) for loop in [*batch, i, j])
    step_rows = ROWS
    shared_b = bool(batch) and not _reads_batched(sch.get(block), b_index)
    inner = int(sch.get(i).extent)
    if shared_b and _fold_batch(inner):
        step_rows = next(r for r in (ROWS, 4, 3, 2, 1) if inner % r == 0 or r % inner == 0)
        i, batch = sch.fuse(*batch, i), []
    rows, columns = (int(sch.get(loop).extent) for loop in (i, j))
    # the parallel loop runs over the column blocks, and over the batch unless B is shared
    batches = 1 if shared_b else math.prod(int(sch.get(loop).extent) for loop in batch)
    lanes = _column_step(columns, width, batches if outputs >= PARALLEL_MIN_OUTPUTS else 0)
    stored = sch.cache_write(block, 0, "local")
    tiles, lane = sch.split(j, [None, lanes])
    steps, row = sch.split(i, [None, min(step_rows, rows)])
    if batch and shared_b:  # each matrix of the batch in steps of ROWS, B packed once
        sch.reorder(tiles, *batch, steps, k, row, lane)
        outer = tiles
    else:
        sch.reorder(*batch, tiles, steps, k, row, lane)
        outer = sch.fuse(*batch, tiles) if batch else tiles
    sch.reverse_compute_at(stored, steps)
    inline_on_store(sch, stored, blocks[1:], steps, outer)
    if (shared_b or not batch) and _layout_free(sch, block, b_index):
        _prepack(sch, block, b_index, lanes)
    else:
        packed = sch.cache_read(block, b_index, "local")
        sch.compute_at(packed, outer)
        sch.vectorize(sch.get_loops(packed)[-1])
    sch.vectorize(lane)
    sch.unroll(row)
    if outputs >= PARALLEL_MIN_OUTPUTS and int(sch.get(outer).extent) > 1:
        sch.parallel(outer)
    init = sch.decompose_reduction(block, k)
    for step in (init, stored):
        *_, unrolled, vector = sch.get_loops(step)
        sch.vectorize(vector)
        sch.unroll(unrolled)
