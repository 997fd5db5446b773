"""benchmarks/harness.py: engines timed in interleaved blocks, fast ones for long enough."""

from __future__ import annotations

import time

from xpuport.benchmarks import harness


def test_a_fast_engine_runs_until_each_block_lasts_long_enough(monkeypatch):
    monkeypatch.setattr(harness, "SETTLE_S", 0.0)
    monkeypatch.setattr(harness, "MIN_BLOCK_S", 0.02)
    calls = {"fast": 0, "slow": 0}

    def fast() -> None:
        calls["fast"] += 1

    def slow() -> None:
        calls["slow"] += 1
        time.sleep(0.01)

    timings = {t.engine: t for t in harness.measure({"fast": fast, "slow": slow}, warmup=1,
                                                    repeat=10)}

    assert timings["slow"].runs == 10  # 2 runs a block already last 0.02 s
    assert timings["fast"].runs >= harness.BLOCKS * 100  # far more than its 10
    assert calls["fast"] == timings["fast"].runs + harness.BLOCKS + 1  # + settle runs, warm-up


def test_without_a_warm_up_the_blocks_keep_their_given_size():
    assert harness.block_runs(4, None) == 4
    assert harness.block_runs(4, 1.0) == 4
    assert harness.block_runs(4, 1e-9) == harness.MAX_BLOCK_RUNS


def test_a_small_ratio_keeps_its_precision_in_the_tables():
    # An MLP against torch eager: xpuport is 80x faster. Rounded to 3 decimal places, the
    # ratio read 0.012 and its medians 0.0124 / 0.9876: 4% apart.
    fast, slow = 0.012345678, 0.98765432
    shown_ratio = harness.significant(fast / slow, 4)
    shown_quotient = harness.significant(fast, 5) / harness.significant(slow, 5)
    assert abs(shown_ratio / shown_quotient - 1) < 1e-3
    assert harness.significant(1234.5678, 5) == 1234.6
    assert harness.significant(0.0, 4) == 0.0
