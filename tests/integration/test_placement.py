"""Placement from the CLI: inspect --backend shows it, compile writes placement.json."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from xpuport.cli import app
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


def test_compile_refuses_a_declined_node_and_points_at_inspect(with_celu, tmp_path):
    result = runner.invoke(app, ["compile", str(with_celu), "-o", str(tmp_path / "a")])
    assert result.exit_code == 2
    assert "celu" in result.output and "xpuport inspect" in result.output
    assert not (tmp_path / "a").exists()


def test_an_artifact_holds_its_placement_under_its_digest(tmp_path):
    model = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")], "m.onnx")
    result = runner.invoke(app, ["compile", str(model), "-o", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    placement = json.loads((tmp_path / "a" / PLACEMENT).read_text())
    assert placement["nodes"] == [{"node": "relu", "op": "Relu", "region": 0, "place": "device",
                                   "reason": "supported"}]
    assert PLACEMENT in json.loads((tmp_path / "a" / MANIFEST).read_text())["files"]
