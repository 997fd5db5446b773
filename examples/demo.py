"""`make demo`: a transformer encoder from PyTorch to a compiled CPU artifact, with proof.

Exports the encoder, prints its op inventory, compiles it for the `cpu` backend, runs it,
and prints the max error against onnxruntime and torch and the latency ratio against
onnxruntime, all measured in this run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import xpuport
from xpuport.benchmarks.harness import measure, ratio
from xpuport.benchmarks.models import encoder
from xpuport.compare import compare, onnxruntime_session
from xpuport.ir.inspect import summarize
from xpuport.ir.load import load_model

OUT = Path("out/demo")
SHAPE = (1, 128, 256)  # batch 1, sequence 128, d_model 256: the encoder of TVM-NOTES.md
console = Console(highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per engine")
    args = parser.parse_args()
    module = encoder(d_model=SHAPE[2], heads=4, layers=2)
    model_path = xpuport.export(module, {"x": SHAPE}, OUT / "encoder.onnx")
    print_inventory(model_path)
    started = time.perf_counter()
    artifact = xpuport.compile(model_path, "cpu", output_dir=OUT / "encoder-cpu")
    console.print(
        f"compile: {time.perf_counter() - started:.2f} s (wall, cache included) → {artifact.path}"
    )
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    ours = artifact.run({"x": x})
    print_errors(ours, module, model_path, x)
    session = onnxruntime_session(model_path)
    timings = measure(
        {
            "xpuport cpu": lambda: artifact.run({"x": x}),
            "onnxruntime": lambda: session.run(None, {"x": x}),
        },
        warmup=2,
        repeat=args.repeat,
    )
    table = Table("engine", "median ms", "xpuport ÷ engine", title="latency (2 threads here)")
    for timing in timings:
        table.add_row(timing.engine, f"{timing.median_ms:.2f}", f"{ratio(timings[0], timing):.2f}")
    console.print(table)


def print_inventory(model_path: Path) -> None:
    summary = summarize(load_model(model_path))
    ops = ", ".join(f"{op} x{count}" for op, count in summary.op_counts)
    console.print(
        f"[bold]{model_path}[/]: {summary.node_count} nodes, "
        f"{summary.parameter_count:,} parameters\nop inventory: {ops}"
    )


def print_errors(
    ours: dict[str, np.ndarray], module: torch.nn.Module, model_path: Path, x: np.ndarray
) -> None:
    with torch.no_grad():
        reference = {"torch": module(torch.from_numpy(x)).numpy()}
    session = onnxruntime_session(model_path)
    reference["onnxruntime"] = session.run(None, {"x": x})[0]
    (name,) = ours
    table = Table("vs", "max abs error", "max rel error", "within atol 1e-4, rtol 1e-3")
    for peer, expected in reference.items():
        (error,) = compare(ours, {name: expected})
        table.add_row(peer, f"{error.max_abs:.3g}", f"{error.max_rel:.3g}", str(error.within))
    console.print(table)


if __name__ == "__main__":
    main()
