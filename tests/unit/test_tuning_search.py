"""lowering/tuning_search.py through `xpuport.tune`: every kernel searched, budgets kept."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import xpuport
from xpuport.backends.base import CompileOptions
from xpuport.lowering.tuning import RECORDS

PROFILE = "generic/x86-64"
WIDTHS = (16, 24, 32, 40, 48, 56)  # five MatMuls, five distinct kernels


@pytest.fixture(scope="module")
def matmul_chain(tmp_path_factory) -> str:
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), f"w{i}")
               for i, (k, n) in enumerate(itertools.pairwise(WIDTHS))]
    nodes = [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"h{i + 1}"])
             for i in range(len(weights))]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("h0", TensorProto.FLOAT, [8, WIDTHS[0]])],
        [helper.make_tensor_value_info(f"h{len(weights)}", TensorProto.FLOAT, [8, WIDTHS[-1]])],
        weights)
    path = tmp_path_factory.mktemp("chain") / "chain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def _kernels_with_records(database) -> set[int]:
    lines = (database / RECORDS[1]).read_text().splitlines()
    return {json.loads(line)[0] for line in lines if line.strip()}


def test_every_kernel_gets_candidates_when_trials_are_few(matmul_chain, tmp_path):
    """Tuning in rounds of 32 trials gave the first kernels 8 each and the rest none."""
    heard: list[tuple[int, str]] = []
    result = xpuport.tune(matmul_chain, "cpu", PROFILE, trials=10, database=tmp_path,
                          options=CompileOptions(library=False),
                          on_progress=lambda measured, kernel: heard.append((measured, kernel)))
    assert result.tasks == 5 and not result.out_of_budget
    assert len(_kernels_with_records(tmp_path)) == 5
    assert heard[-1][0] == result.trials == 10
    assert all(kernel.startswith("matmul") for _, kernel in heard)


def test_a_spent_budget_stops_the_search_and_keeps_what_was_measured(matmul_chain, tmp_path):
    result = xpuport.tune(matmul_chain, "cpu", PROFILE, trials=500, budget=1,
                          database=tmp_path, options=CompileOptions(library=False))
    assert result.out_of_budget and result.trials < 500
    artifact = xpuport.compile(matmul_chain, "cpu", PROFILE, tmp_path / "out",
                               options=CompileOptions(library=False), tuning=tmp_path)
    assert len(artifact.manifest["tuning"]["tuned_kernels"]) == len(
        _kernels_with_records(tmp_path))


def test_the_search_registers_only_its_targets_tensor_intrinsics():
    """CUDA's intrinsics alone take most of the 51 s the whole package takes to import."""
    script = """
import sys, tvm
from xpuport.lowering.tuning_search import INTRINSICS, target_intrinsics_only
target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-unknown-linux-gnu"})
with target_intrinsics_only(target):
    import tvm.s_tir.tensor_intrin  # what MetaSchedule's TuneContext does
    inside = sorted(name for name in sys.modules if name.startswith(INTRINSICS + "."))
print(inside, INTRINSICS in sys.modules)
"""
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True, timeout=120).stdout.strip()
    assert shown == "['tvm.s_tir.tensor_intrin.x86'] False"
