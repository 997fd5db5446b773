"""The default CPU schedule of a convolution TVM generates: a direct NHWC convolution.

Convolutions too small to repay a library call stay in TVM (backends/cpu.py), in NHWC with
HWIO weights (lowering/tvm_kernels.py), so that one output pixel's channels are a contiguous
vector and so is the weight row they need. Each step of the reduction (kernel row, column,
input channel) then broadcasts one input value to a few output pixels, multiplies it by
one vector of weights, and adds it to accumulators held in registers. The small CNN's
16->16 3x3 conv at 56x56 (2-core AVX2 host, one thread) took 186 us so, 77 GFLOP/s, where
oneDNN through torch took 149 us on two; with two threads, 95 us.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tvm
from tvm import s_tir
from tvm.s_tir import dlight
from tvm.target.codegen import llvm_get_vector_width, target_has_features

# Output pixels computed together: PIXELS x (vector lanes / 8) AVX2 accumulators. 4 was the
# fastest on every conv of the small CNN (one thread: 2 pixels 483 us, 4 186 us, 7 326 us,
# 8 240 us for the 16-channel conv), where 16 lanes and 4 pixels fill half the registers.
PIXEL_BLOCKS = (4, 6, 5, 7, 3, 2, 1)
# AVX-512's 16 lanes are one of its 32 registers, so 16 pixels fill half of them. On the
# 2-core Sapphire Rapids host (one process, onnxruntime in the same runs) the small CNN took
# at batch 1 / 8: 1.08-1.11x / 1.16-1.25x onnxruntime in blocks of 4 pixels, 0.90x / 0.95-0.99x
# of 14, 0.85x / 0.96x of 16, and 1.21x / 1.31x of 28.
WIDE_PIXEL_BLOCKS = (16, 14, 8, 7, 4, 6, 5, 3, 2, 1)
# Below this many output elements the conv runs serially: waking threads costs more.
PARALLEL_MIN_OUTPUTS = 16384


class DirectConv(dlight.ScheduleRule):  # type: ignore[misc]  # dlight is untyped
    """An NHWC conv2d with HWIO weights (a pad block before it, elementwise blocks after
    it): output channels vectorized, PIXEL_BLOCKS output pixels per step, the epilogue
    applied as the accumulators are stored, rows in parallel."""

    def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
        return schedule_found(func, target, _the_conv,
                              lambda sch, found, conv, lanes: _schedule(
                                  sch, found, conv, lanes,
                                  WIDE_PIXEL_BLOCKS if has_avx512(target) else PIXEL_BLOCKS))


def has_avx512(target: Any) -> bool:
    """Whether `target` has AVX-512's 32 vector registers of 16 float32 lanes."""
    return bool(target_has_features("avx512f", target))


def schedule_found(func: Any, target: Any, find: Callable[[Any, list[Any]], Any],
                   schedule: Callable[[Any, list[Any], Any, int], None]) -> Any:
    """`func` scheduled by `schedule` where `find` finds its block(s) among the kernel's
    top-level blocks; None for anything else (dlight asks every rule, whatever the target)
    or where a step does not apply to this kernel (the next rule's schedule then)."""
    if not isinstance(func, tvm.tirx.PrimFunc) or target.kind.name != "llvm" or \
            not isinstance(func.body, s_tir.SBlockRealize):
        return None
    sch = s_tir.Schedule(func)
    blocks = list(sch.get_child_blocks(sch.get_sblock(func.body.block.name_hint)))
    found = find(sch, blocks)
    if found is None:
        return None
    try:
        schedule(sch, blocks, found, lanes_of(target))
    except s_tir.ScheduleError:
        return None
    return sch


def _the_conv(sch: Any, blocks: list[Any]) -> Any | None:
    """The kernel's one conv block, when it reads Input[n, ., ., rc] and Weight[rh, rw, rc,
    c] into Out[n, h, w, c] in float32 over a plain 7-loop nest, every other block
    elementwise or padding."""
    reductions = [b for b in blocks if _kinds(sch, b) != "S" * len(_kinds(sch, b))]
    if len(reductions) != 1 or _kinds(sch, reductions[0]) != "SSSSRRR":
        return None
    conv = reductions[0]
    stmt = sch.get(conv)
    n, h, w, c, rh, rw, rc = (it.var for it in stmt.iter_vars)
    if len(stmt.writes) != 1 or not _indexed_by(stmt.writes[0], n, h, w, c):
        return None
    loops = sch.get_loops(conv)
    if str(stmt.writes[0].source.dtype) != "float32" or len(loops) != 7 or not all(
            isinstance(sch.get(loop).extent, tvm.tirx.IntImm) for loop in loops):
        return None
    channels = int(sch.get(loops[3]).extent)
    if channels % 4 and channels > 16:  # no whole vectors: the fallback's schedule
        return None
    operands = [r for r in stmt.reads if not r.source.same_as(stmt.writes[0].source)]
    weights = [r for r in operands if _indexed_by(r, rh, rw, rc, c)]
    inputs = [r for r in operands if len(r.region) == 4 and r.region[-1].min.same_as(rc)]
    return conv if len(weights) == 1 and len(inputs) == 1 and weights != inputs else None


def _kinds(sch: Any, block: Any) -> str:
    return "".join("S" if it.iter_type == tvm.tirx.IterVar.DataPar else "R"
                   for it in sch.get(block).iter_vars)


def _indexed_by(region: Any, *variables: Any) -> bool:
    indices = [r.min for r in region.region]
    return len(indices) == len(variables) and all(
        i.same_as(v) for i, v in zip(indices, variables, strict=True))


def _schedule(sch: Any, blocks: list[Any], conv: Any, lanes: int,
              pixel_blocks: tuple[int, ...]) -> None:
    block = conv
    n, h, w, c, rh, rw, rc = sch.get_loops(block)
    channels, width = _extent(sch, c), _extent(sch, w)
    lanes = next((v for v in (lanes, 8, 4) if channels % v == 0), channels)
    pixels = next(p for p in pixel_blocks if width % p == 0)
    stored = sch.cache_write(block, 0, "local")
    tiles, lane = sch.split(c, [None, lanes])
    columns, pixel = sch.split(w, [None, pixels])
    sch.reorder(n, h, columns, tiles, rh, rw, rc, pixel, lane)
    sch.reverse_compute_at(stored, tiles)
    position = blocks.index(conv)
    inline_on_store(sch, stored, blocks[position + 1:], tiles)
    for prologue in blocks[:position]:
        sch.compute_inline(prologue)
    sch.vectorize(lane)
    sch.unroll(pixel)
    if _extent(sch, n) * _extent(sch, h) * width * channels >= PARALLEL_MIN_OUTPUTS:
        sch.parallel(sch.fuse(n, h))
    init = sch.decompose_reduction(block, rh)
    for step in (init, stored):
        *_, unrolled, vector = sch.get_loops(step)
        sch.vectorize(vector)
        sch.unroll(unrolled)


def inline_on_store(sch: Any, producer: Any, epilogue: list[Any], at: Any,
                    after: Any | None = None) -> None:
    """The elementwise blocks after a cache-written reduction computed as its accumulators
    are stored (by `producer`): inlined into the store where they form a chain (each reads
    the one before it and nothing else of the kernel: bias, residual add, ReLU); otherwise
    each computed on the tile just stored, still in cache, under the loop `after` (or
    `at`). Inlined into one expression, a GELU's steps (three read the bias add) were
    repeated in every use; computed under each 6-row step, whose last one is partial, a
    128x256x1024 GEMM with its GELU took 852 us, 423 us under its column block."""
    epilogue = _inline_single_use(sch, epilogue)
    if _chain(sch, producer, epilogue):
        for step in epilogue:
            sch.reverse_compute_inline(step)
        return
    for step in epilogue:
        sch.reverse_compute_at(step, after if after is not None else at)
        sch.vectorize(sch.get_loops(step)[-1])
    for step in [producer, *epilogue[:-1]]:
        sch.set_scope(step, 0, "local")  # a tile on the stack, not a workspace allocated per tile


def _inline_single_use(sch: Any, epilogue: list[Any]) -> list[Any]:
    """`epilogue` with each step but the last that one other step reads inlined into it."""
    kept = []
    for step in epilogue[:-1]:
        if len(sch.get_consumers(step)) == 1:
            sch.compute_inline(step)
        else:
            kept.append(step)
    return [*kept, *epilogue[-1:]]


def _chain(sch: Any, producer: Any, epilogue: list[Any]) -> bool:
    written = [sch.get(b).writes[0].source for b in [producer, *epilogue]]
    for n, step in enumerate(epilogue):
        read = [w for w in written if any(r.source.same_as(w) for r in sch.get(step).reads)]
        if len(read) != 1 or not read[0].same_as(written[n]):
            return False
        if any(r.source.same_as(written[n]) for later in epilogue[n + 1:]
               for r in sch.get(later).reads):
            return False
    return True


def _extent(sch: Any, loop: Any) -> int:
    return int(sch.get(loop).extent)


def lanes_of(target: Any) -> int:
    """float32 lanes: as cpu_schedules._lanes, 16 on every x86 target of TVM 0.27."""
    bits = llvm_get_vector_width(target)
    return max(1, bits // 32) if bits > 0 else 1
