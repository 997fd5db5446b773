"""Time xpuport against peers in one run: warm-up, interleaved rounds, medians, ratios."""

from __future__ import annotations

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


def measure(runners: Mapping[str, Runner], warmup: int = 3, repeat: int = 20) -> list[Timing]:
    """Warm every engine up, then time them in interleaved rounds so drift hits all alike."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeat):
        for name, run in runners.items():
            started = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - started) * 1e3)
    return [_timing(name, times) for name, times in samples.items()]


def _timing(engine: str, times: list[float]) -> Timing:
    ordered = sorted(times)
    return Timing(
        engine=engine,
        median_ms=statistics.median(ordered),
        p10_ms=ordered[int(0.1 * (len(ordered) - 1))],
        p90_ms=ordered[int(0.9 * (len(ordered) - 1))],
        runs=len(ordered),
    )


def ratio(subject: Timing, peer: Timing) -> float:
    """xpuport ÷ peer median latency: below 1 means xpuport is faster."""
    return subject.median_ms / peer.median_ms
