"""The npusim plugin end to end: registered as a plugin, a float16 encoder from torch on the
simulated NPU within the float64 policy, conformance on it, and life without it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import numpy as np
import pytest

import xpuport
from xpuport.benchmarks.models import encoder
from xpuport.conformance.cases import Case
from xpuport.conformance.golden import golden
from xpuport.conformance.models_suite import model_tolerance
from xpuport.conformance.tolerance import measure
from xpuport.ir.inspect import TensorSpec
from xpuport.lowering.artifact import PLACEMENT

XPUPORT = [str(Path(sys.executable).with_name("xpuport"))]
PLUGIN = "xpuport-npusim"


def cli(*args):
    return subprocess.run([*XPUPORT, *args], capture_output=True, text=True, check=False)


def test_npusim_is_listed_as_a_plugin():
    rows = {row["name"]: row for row in json.loads(cli("backends", "--json").stdout)}
    assert rows["npusim"] | {"source": None} == {"name": "npusim", "origin": "plugin",
                                                 "available": True, "error": None,
                                                 "source": None}
    assert rows["cpu"]["origin"] == "builtin"


@pytest.fixture(scope="module")
def encoder16(tmp_path_factory):
    folder = tmp_path_factory.mktemp("npusim")
    return xpuport.export(encoder().half(), [TensorSpec("x", (2, 16, 64), "float16")],
                          folder / "encoder16.onnx")


def test_a_float16_encoder_runs_on_the_npu_within_the_float64_policy(encoder16, tmp_path):
    artifact = xpuport.compile(encoder16, "npusim", output_dir=tmp_path / "a")
    placement = json.loads((artifact.path / PLACEMENT).read_text())
    nodes = placement["nodes"]
    assert all(node["reason"] for node in nodes)
    matrix = [n for n in nodes if n["op"] in ("MatMul", "Gemm")]
    assert len(matrix) == 12 and all(n["place"] == "device" for n in matrix)
    assert all(n["reason"].startswith("matrix unit: float16 inputs, float32 accumulation")
               for n in matrix)
    host = [n for n in nodes if n["place"] == "host"]
    assert {n["op"] for n in host} == {"Gather"}
    assert all("no kernel for Gather" in n["reason"] for n in host)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 64)).astype(np.float16)
    output = next(iter(artifact.run({"x": x}).values()))
    graph = xpuport.load(artifact.path).graph_path.read_bytes()
    import onnx

    model = onnx.load_model_from_string(graph)
    case = Case("encoder.float16", "models", "encoder", "models", "float16", graph, {"x": x},
                model_tolerance(model, "float16"))
    errors = measure(output, golden(case)[0], "float16", case.tolerance)
    assert errors.passed, errors.message
    assert artifact.transfers is not None and artifact.transfers["to_host"] >= 2


def test_conformance_on_npusim_declines_what_the_profile_rules_out(tmp_path):
    summary = xpuport.conform("npusim", tmp_path / "run", ops=["MatMul", "Gather"],
                              dtypes=["float16", "float32"], jobs=1)
    results = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").open()]
    statuses = {(r["op"], r["dtype"], r["status"]) for r in results}
    assert ("MatMul", "float16", "pass") in statuses
    matmul16 = [r for r in results if r["op"] == "MatMul" and r["dtype"] == "float16"]
    assert all(r["status"] == "pass" or "rank 2" in r["message"] for r in matmul16)
    assert {s for op, dtype, s in statuses if (op, dtype) == ("MatMul", "float32")} == {
        "unsupported"}
    assert {s for op, _, s in statuses if op == "Gather"} == {"unsupported"}
    assert summary["green"]


@pytest.fixture
def plugin_uninstalled(tmp_path):
    """pip-uninstalls the plugin, then puts back every file its RECORD lists."""
    dist = distribution(PLUGIN)
    root = Path(str(dist.locate_file("")))
    saved = tmp_path / "saved"
    files = [Path(str(f)) for f in dist.files or []]
    for relative in files:
        if (root / relative).is_file():
            (saved / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / relative, saved / relative)
    done = subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", PLUGIN],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    try:
        yield
    finally:
        for relative in files:
            if (saved / relative).is_file():
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(saved / relative, root / relative)


def test_uninstalling_the_plugin_removes_npusim_and_nothing_else(plugin_uninstalled, tmp_path):
    rows = json.loads(cli("backends", "--json").stdout)
    assert {row["name"] for row in rows} == {"cpu", "cuda", "ort", "rocm"}
    assert all(row["error"] is None for row in rows)
    model = xpuport.export(encoder(), {"x": (1, 8, 64)}, tmp_path / "enc.onnx")
    assert cli("compile", str(model), "-o", str(tmp_path / "cpu")).returncode == 0
    refused = cli("compile", str(model), "--backend", "npusim", "-o", str(tmp_path / "npu"))
    assert refused.returncode == 2 and "unknown backend 'npusim'" in refused.stderr
    assert "a plugin must be pip-installed" in refused.stderr
    assert not (tmp_path / "npu").exists()
