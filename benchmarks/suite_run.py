"""`xpuport bench --suite`: export, compile and time every suite model against its peers."""

from __future__ import annotations

import json
import platform
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import xpuport
from xpuport.backends.base import CompileOptions
from xpuport.benchmarks.harness import BLOCKS, MIN_BLOCK_S, Timing, measure, ratio, significant
from xpuport.benchmarks.peers import peer_device, peer_runner
from xpuport.ir.inspect import TensorSpec
from xpuport.lowering.artifact import Artifact

if TYPE_CHECKING:  # the suite's models import torch: only the suite run needs it
    from xpuport.benchmarks.suite import SuiteModel


@dataclass(frozen=True)
class SuiteRequest:
    backend: str
    profile: str | None
    models: Sequence[SuiteModel]
    peers: Sequence[str]
    options: CompileOptions
    warmup: int = 3
    repeat: int = 20
    batches: tuple[int, ...] = ()  # overrides each model's own pair
    precision: str = "float32"  # "float16": weights and float inputs in half precision
    # compile's `tuning`: the profile's database (True), none (False) or this folder
    tuning: str | Path | bool = True


def run_suite(
    request: SuiteRequest, on_row: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="xpuport-bench-") as scratch:
        for model in request.models:
            for batch in request.batches or model.batches:
                row = bench_one(request, model, batch, Path(scratch))
                on_row(row)
                rows.append(row)
    return rows


def bench_one(
    request: SuiteRequest, model: SuiteModel, batch: int, scratch: Path
) -> dict[str, Any]:
    module = model.factory()
    dtype = model.dtype
    if request.precision == "float16" and dtype == "float32":
        module, dtype = module.half(), "float16"
    spec = TensorSpec(model.input_name, (batch, *model.shape), dtype)
    path = xpuport.export(module, [spec], scratch / f"{model.name}-b{batch}.onnx")
    artifact = xpuport.compile(path, request.backend, request.profile, options=request.options,
                               tuning=request.tuning)
    rng = np.random.default_rng(0)
    shape = (batch, *model.shape)
    feeds = {spec.name: rng.integers(0, 100, shape).astype(np.int64) if model.dtype == "int64"
             else rng.standard_normal(shape).astype(dtype)}
    timings = time_against_peers(artifact, feeds, request.peers, path, module,
                                 request.warmup, request.repeat)
    return {
        "model": model.name,
        "batch": batch,
        "precision": dtype if dtype != "int64" else request.precision,
        "compile_seconds": artifact.manifest["compile_seconds"],
        "library_calls": sum(artifact.manifest.get("library_calls", {}).values()),
        "tuned_kernels": len(artifact.tuned_kernels),
        "median_ms": {t.engine: significant(t.median_ms, 5) for t in timings},
        "ratio": {t.engine: significant(ratio(timings[0], t), 4) for t in timings[1:]},
    }


def time_against_peers(artifact: Artifact, feeds: Mapping[str, np.ndarray],
                       peers: Sequence[str], onnx_path: Path, module: object | None,
                       warmup: int, repeat: int) -> list[Timing]:
    """xpuport first, then each peer on the artifact's device, in one measurement."""
    device = peer_device(artifact.backend_name)
    runners: dict[str, Callable[[], object]] = {"xpuport": artifact.timed_runner(feeds)}
    for peer in peers:
        runners[peer] = peer_runner(peer, device, onnx_path, module, feeds)
    return measure(runners, warmup=warmup, repeat=repeat)


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def write_tables(rows: list[dict[str, Any]], request: SuiteRequest, out: Path) -> list[Path]:
    """bench.json and bench.md in `out`: the same rows, for machines and for people."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {"backend": request.backend, "profile": request.profile, "machine": machine(),
            "peers": list(request.peers), "options": request.options.to_json(),
            "warmup": request.warmup, "repeat": request.repeat, "precision": request.precision,
            "tuning": _tuning_label(request.tuning)}
    (out / "bench.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    (out / "bench.md").write_text(markdown(rows, meta))
    return [out / "bench.json", out / "bench.md"]


def _tuning_label(tuning: str | Path | bool) -> str:
    if tuning is True:
        return "the profile's database, where it has one"
    return "none" if tuning is False else str(tuning)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    peers = meta["peers"]
    head = ["model", "batch", "precision", "xpuport ms", *[f"{p} ms" for p in peers],
            *[f"÷ {p}" for p in peers], "compile s", "tuned kernels"]
    lines = [f"Backend `{meta['backend']}` on {meta['machine']}; medians of at least "
             f"{meta['repeat']} runs (each engine's {BLOCKS} blocks at least {MIN_BLOCK_S} s) "
             f"after {meta['warmup']} warm-up; ÷ is xpuport ÷ peer (below 1: faster); tuning "
             f"records: {meta.get('tuning', 'none')}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["model"], str(row["batch"]), row["precision"],
                 f"{row['median_ms']['xpuport']:.3f}",
                 *[f"{row['median_ms'][p]:.3f}" for p in peers],
                 *[f"{row['ratio'][p]:.2f}" for p in peers], f"{row['compile_seconds']:.1f}",
                 str(row.get("tuned_kernels", 0))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
