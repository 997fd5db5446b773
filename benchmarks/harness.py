"""Time xpuport against peers in one run: warm-up, interleaved rounds, medians, ratios."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Runner = Callable[[], object]


@dataclass(frozen=True)
class Timing:
    engine: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    def to_json(self) -> dict[str, object]:
        return {
            "engine": self.engine,
            "median_ms": self.median_ms,
            "p10_ms": self.p10_ms,
            "p90_ms": self.p90_ms,
            "runs": self.runs,
        }


BLOCKS = 5  # rounds over the engines; drift over the run hits every engine alike
SETTLE_S = 0.5  # idle time before an engine's block: other engines' spinning threads park
# (OpenBLAS workers busy-wait for about 0.1-0.3 s after their last call)
# Each engine's block runs at least this long: 4 runs of a 30 us model right after the
# settle pause, 0.1 ms of samples, moved the suite's small-model rows 1.1-1.8x between
# runs of the same code.
MIN_BLOCK_S = 0.2
MAX_BLOCK_RUNS = 2000


def measure(runners: Mapping[str, Runner], warmup: int = 3, repeat: int = 20) -> list[Timing]:
    """Warm every engine up, then time them in blocks, round-robin: each block settles, runs
    one untimed warm-up, then its share of the timed runs back to back: `repeat` runs in
    all, or more where that would last under MIN_BLOCK_S a block (sized by the fastest
    warm-up run). Interleaving single runs would time each engine while the previous one's
    thread pool still spins (onnxruntime, OpenMP and TVM all spin-wait), which on a 2-core
    machine triples some medians."""
    per_run_s = {name: _fastest_run(run, warmup) for name, run in runners.items()}
    samples: dict[str, list[float]] = {name: [] for name in runners}
    sizes = [repeat // BLOCKS + (1 if i < repeat % BLOCKS else 0) for i in range(BLOCKS)]
    for size in (s for s in sizes if s):
        for name, run in runners.items():
            time.sleep(SETTLE_S)
            run()
            for _ in range(block_runs(size, per_run_s[name])):
                started = time.perf_counter()
                run()
                samples[name].append((time.perf_counter() - started) * 1e3)
    return [_timing(name, times) for name, times in samples.items()]


def block_runs(size: int, per_run_s: float | None) -> int:
    """A block's timed runs: `size`, or enough to last MIN_BLOCK_S (at most MAX_BLOCK_RUNS)."""
    if not per_run_s:
        return size
    return max(size, min(MAX_BLOCK_RUNS, math.ceil(MIN_BLOCK_S / per_run_s)))


def _fastest_run(run: Runner, warmup: int) -> float | None:
    """The fastest of `warmup` untimed runs, in seconds (None without any)."""
    fastest = None
    for _ in range(warmup):
        started = time.perf_counter()
        run()
        elapsed = time.perf_counter() - started
        fastest = elapsed if fastest is None else min(fastest, elapsed)
    return fastest


def _timing(engine: str, times: list[float]) -> Timing:
    ordered = sorted(times)
    return Timing(
        engine=engine,
        median_ms=statistics.median(ordered),
        p10_ms=ordered[int(0.1 * (len(ordered) - 1))],
        p90_ms=ordered[int(0.9 * (len(ordered) - 1))],
        runs=len(ordered),
    )


def significant(value: float, digits: int) -> float:
    """`value` rounded to `digits` significant digits, for tables: rounding to decimal places
    took a 0.08 ratio (the MLP against torch) 0.6% off its medians' quotient."""
    return float(f"{value:.{digits}g}")


def ratio(subject: Timing, peer: Timing) -> float:
    """xpuport ÷ peer median latency: below 1 means xpuport is faster."""
    return subject.median_ms / peer.median_ms
