"""Placement from the CLI: inspect --backend shows it, compile writes placement.json."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

import xpuport
from xpuport.cli import app
from xpuport.errors import UnsupportedOpError
from xpuport.lowering.artifact import MANIFEST, PLACEMENT

runner = CliRunner()


def _save(tmp_path, nodes, name):
    value = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "g", [value("x", TensorProto.FLOAT, [2, 3])],
                              [value("y", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    return path


@pytest.fixture
def with_celu(tmp_path):
    return _save(tmp_path, [helper.make_node("Relu", ["x"], ["a"], name="relu"),
                            helper.make_node("Celu", ["a"], ["b"], name="celu"),
                            helper.make_node("Add", ["b", "x"], ["y"], name="add")], "celu.onnx")


def test_inspect_with_a_backend_shows_where_each_node_runs(with_celu):
    result = runner.invoke(app, ["inspect", str(with_celu), "--backend", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    placement = json.loads(result.output)["placement"]
    assert placement["regions"] == [{"region": 0, "place": "device", "nodes": 1},
                                    {"region": 1, "place": "host", "nodes": 1},
                                    {"region": 2, "place": "device", "nodes": 1}]
    celu = next(n for n in placement["nodes"] if n["node"] == "celu")
    assert "no converter for Celu" in celu["reason"]
    table = runner.invoke(app, ["inspect", str(with_celu), "--backend", "cpu"])
    assert "declines" in table.output and "Celu" in table.output


def test_a_declined_node_falls_back_to_the_host_visibly(with_celu, tmp_path):
    result = runner.invoke(app, ["compile", str(with_celu), "-o", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "1 node(s) run on the host" in result.output and "celu (Celu)" in result.output
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["graph.onnx", "manifest.json", "placement.json", "region-0.so",
                     "region-1.onnx", "region-2.so"]


def test_a_fallback_artifact_agrees_with_onnxruntime_and_counts_transfers(with_celu, tmp_path):
    artifact = xpuport.compile(with_celu, output_dir=tmp_path / "a")
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    ours = artifact.run({"x": x})["y"]
    expected = ort.InferenceSession(str(with_celu)).run(None, {"x": x})[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)
    # x goes to region 0 and 2; a to the host; b back to the device; y to the caller
    assert artifact.transfers == {"to_device": 2, "to_host": 2, "bytes": 4 * 24,
                                  "by_region": {"0": 1, "1": 1, "2": 1, "-1": 1}}


@pytest.mark.parametrize(("flags", "phrase"), [(["--strict"], "--strict allows none"),
                                               (["--max-fallback", "0"], "allows 0")])
def test_strict_and_max_fallback_refuse_naming_the_node(with_celu, tmp_path, flags, phrase):
    result = runner.invoke(app, ["compile", str(with_celu), "-o", str(tmp_path / "a"), *flags])
    assert result.exit_code == 2
    assert phrase in result.output and "celu (Celu)" in result.output
    assert not (tmp_path / "a").exists()


def test_max_fallback_within_the_bound_compiles(with_celu, tmp_path):
    result = runner.invoke(app, ["compile", str(with_celu), "-o", str(tmp_path / "a"),
                                 "--max-fallback", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert [n["node"] for n in json.loads(result.output)["fallback"]] == ["celu"]


def test_strict_refuses_a_cached_fallback_artifact_too(with_celu):
    xpuport.compile(with_celu)  # into the cache
    with pytest.raises(UnsupportedOpError, match="celu"):
        xpuport.compile(with_celu, strict=True)


def test_an_artifact_holds_its_placement_under_its_digest(tmp_path):
    model = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")], "m.onnx")
    result = runner.invoke(app, ["compile", str(model), "-o", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    placement = json.loads((tmp_path / "a" / PLACEMENT).read_text())
    assert placement["nodes"] == [{"node": "relu", "op": "Relu", "region": 0, "place": "device",
                                   "reason": "supported"}]
    assert PLACEMENT in json.loads((tmp_path / "a" / MANIFEST).read_text())["files"]
