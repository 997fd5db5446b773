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


def _save(tmp_path, nodes, name, shape=(2, 3), out_shape=(2, 3), initializers=()):
    value = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "g", [value("x", TensorProto.FLOAT, list(shape))],
                              [value("y", TensorProto.FLOAT, list(out_shape))],
                              list(initializers))
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    return path


@pytest.fixture
def with_det(tmp_path):
    """Det has no TVM converter, no ONNX function body and no xpuport rule: host only."""
    axes = onnx.numpy_helper.from_array(np.array([1, 2], np.int64), "axes")
    return _save(tmp_path, [helper.make_node("Relu", ["x"], ["a"], name="relu"),
                            helper.make_node("Det", ["a"], ["b"], name="det"),
                            helper.make_node("ReduceSum", ["x", "axes"], ["s"], name="sum",
                                             keepdims=0),
                            helper.make_node("Add", ["b", "s"], ["y"], name="add")],
                 "det.onnx", shape=(2, 3, 3), out_shape=(2,), initializers=[axes])


@pytest.fixture
def with_celu(tmp_path):
    """Celu has no TVM converter, but an ONNX function body TVM can import."""
    return _save(tmp_path, [helper.make_node("Relu", ["x"], ["a"], name="relu"),
                            helper.make_node("Celu", ["a"], ["b"], name="celu", alpha=2.0),
                            helper.make_node("Add", ["b", "x"], ["y"], name="add")], "celu.onnx")


def test_inspect_with_a_backend_shows_where_each_node_runs(with_det):
    result = runner.invoke(app, ["inspect", str(with_det), "--backend", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    placement = json.loads(result.output)["placement"]
    assert placement["regions"] == [{"region": 0, "place": "device", "nodes": 2},
                                    {"region": 1, "place": "host", "nodes": 1},
                                    {"region": 2, "place": "device", "nodes": 1}]
    det = next(n for n in placement["nodes"] if n["node"] == "det")
    assert "no converter for Det" in det["reason"]
    table = runner.invoke(app, ["inspect", str(with_det), "--backend", "cpu"])
    assert "declines" in table.output and "Det" in table.output


def test_a_declined_node_falls_back_to_the_host_visibly(with_det, tmp_path):
    result = runner.invoke(app, ["compile", str(with_det), "-o", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "1 node(s) run on the host" in result.output and "det (Det)" in result.output
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["graph.onnx", "manifest.json", "placement.json", "region-0.so",
                     "region-1.onnx", "region-2.so"]


def test_a_node_with_an_onnx_function_body_is_decomposed_not_sent_to_the_host(with_celu,
                                                                                tmp_path):
    result = runner.invoke(app, ["compile", str(with_celu), "-o", str(tmp_path / "a"),
                                 "--strict"])
    assert result.exit_code == 0, result.output
    assert "decomposed celu (Celu) into 3 node(s) through its ONNX function body" \
        in " ".join(result.output.split())
    placement = json.loads((tmp_path / "a" / PLACEMENT).read_text())
    assert placement["fallback"] == []
    assert placement["decomposed"] == [{"node": "celu", "op": "Celu", "via": "onnx-function",
                                        "nodes": 3}]
    expanded = [n for n in placement["nodes"] if n["node"].startswith("celu/")]
    assert [n["op"] for n in expanded] == ["Div", "Elu", "Mul"]  # alpha: an initializer
    assert {n["origin"] for n in expanded} == {"Celu 'celu' (onnx-function)"}
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    ours = xpuport.load(tmp_path / "a").run({"x": x})["y"]
    expected = ort.InferenceSession(str(with_celu)).run(None, {"x": x})[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)


def test_a_fallback_artifact_agrees_with_onnxruntime_and_counts_transfers(with_det, tmp_path):
    artifact = xpuport.compile(with_det, output_dir=tmp_path / "a")
    x = np.random.default_rng(0).standard_normal((2, 3, 3)).astype(np.float32)
    ours = artifact.run({"x": x})["y"]
    expected = ort.InferenceSession(str(with_det)).run(None, {"x": x})[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    # x goes to region 0; a to the host; b back to the device; y to the caller
    transfers = artifact.transfers
    assert transfers is not None
    assert {k: transfers[k] for k in ("to_device", "to_host", "by_region")} == {
        "to_device": 2, "to_host": 2, "by_region": {"0": 1, "1": 1, "2": 1, "-1": 1}}
    # on a CPU device, results reach the host through DLPack without a copy; uploads share
    # memory only when the host array is 64-byte aligned
    shared = transfers["zero_copy"]
    assert 2 <= shared <= 4 and transfers["copied_bytes"] <= 4 * (18 + 18 + 2 + 2)


@pytest.mark.parametrize(("flags", "phrase"), [(["--strict"], "--strict allows none"),
                                               (["--max-fallback", "0"], "allows 0")])
def test_strict_and_max_fallback_refuse_naming_the_node(with_det, tmp_path, flags, phrase):
    result = runner.invoke(app, ["compile", str(with_det), "-o", str(tmp_path / "a"), *flags])
    assert result.exit_code == 2
    assert phrase in result.output and "det (Det)" in result.output
    assert not (tmp_path / "a").exists()


def test_max_fallback_within_the_bound_compiles(with_det, tmp_path):
    result = runner.invoke(app, ["compile", str(with_det), "-o", str(tmp_path / "a"),
                                 "--max-fallback", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert [n["node"] for n in json.loads(result.output)["fallback"]] == ["det"]


def test_strict_refuses_a_cached_fallback_artifact_too(with_det):
    xpuport.compile(with_det)  # into the cache
    with pytest.raises(UnsupportedOpError, match="det"):
        xpuport.compile(with_det, strict=True)


def test_an_artifact_holds_its_placement_under_its_digest(tmp_path):
    model = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")], "m.onnx")
    result = runner.invoke(app, ["compile", str(model), "-o", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    placement = json.loads((tmp_path / "a" / PLACEMENT).read_text())
    assert placement["nodes"] == [{"node": "relu", "op": "Relu", "region": 0, "place": "device",
                                   "reason": "supported"}]
    assert PLACEMENT in json.loads((tmp_path / "a" / MANIFEST).read_text())["files"]


def test_the_origin_of_decomposed_nodes_survives_exporter_names_with_slashes(tmp_path):
    # the legacy torch exporter names nodes like /encoder/Celu
    path = _save(tmp_path, [helper.make_node("Celu", ["x"], ["a"], name="/encoder/Celu"),
                            helper.make_node("Celu", ["a"], ["y"], name="/encoder/Celu/x")],
                 "slashes.onnx")
    placement = json.loads(runner.invoke(app, ["inspect", str(path), "--backend", "cpu",
                                               "--json"]).output)["placement"]
    origins = {n["node"]: n.get("origin") for n in placement["nodes"]}
    assert origins["/encoder/Celu/Div_1"] == "Celu '/encoder/Celu' (onnx-function)"
    assert origins["/encoder/Celu/x/Div_1"] == "Celu '/encoder/Celu/x' (onnx-function)"
    assert [d["node"] for d in placement["decomposed"]] == ["/encoder/Celu", "/encoder/Celu/x"]
