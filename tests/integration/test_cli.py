"""Every CLI command, and every bad input: a named error with its fix, exit 2, no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from integration_models import legacy_cnn
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from xpuport.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, *phrases: str) -> None:
    assert result.exit_code == 2, result.output
    assert "fix:" in result.output
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return legacy_cnn(tmp_path_factory.mktemp("cli") / "legacy.onnx")


@pytest.fixture
def artifact(model, tmp_path) -> Path:
    result = invoke("compile", model, "-o", tmp_path / "art")
    assert result.exit_code == 0, result.output
    return tmp_path / "art"


def test_backends_lists_cpu_as_builtin():
    rows = json.loads(invoke("backends", "--json").output)
    cpu = next(row for row in rows if row["name"] == "cpu")
    assert cpu["origin"] == "builtin" and cpu["available"] and cpu["error"] is None
    assert "cpu" in invoke("backends").output


def test_profiles_rows_carry_their_sources():
    rows = json.loads(invoke("profiles", "--json").output)
    host = next(row for row in rows if row["name"] == "generic/x86-64")
    assert {"name", "vendor", "backend", "status", "sources"} <= set(host)
    assert all(url.startswith("https://") for url in host["sources"].values())
    assert "generic/x86-64" in invoke("profiles").output


def test_export_from_a_factory_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import torch\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(4, 2))\n"
    )
    monkeypatch.chdir(tmp_path)
    result = invoke("export", "my_models:build", "--input", "x=3x4", "-o", "m.onnx")
    assert result.exit_code == 0, result.output
    assert onnx.load(tmp_path / "m.onnx").graph.input[0].name == "x"


def test_export_bad_factory_and_bad_shape(tmp_path):
    assert_user_error(
        invoke("export", "no_such_mod:f", "--input", "x=2", "-o", tmp_path / "a"), "no_such_mod"
    )
    bad = invoke(
        "export", "xpuport.benchmarks.models:mlp", "--input", "x=2xq", "-o", tmp_path / "a"
    )
    assert_user_error(bad, "x=2xq")
    assert not (tmp_path / "a").exists()


def test_inspect_reports_conversion_and_inventory(model):
    data = json.loads(invoke("inspect", model, "--json").output)
    assert data["source_opset"] == 8 and data["opset"] == 20
    assert data["ops"]["Conv"] == 1 and data["ops"]["LRN"] == 1
    assert data["inputs"][0] == {"name": "x", "shape": [1, 3, 32, 32], "dtype": "float32"}
    assert "op inventory" in invoke("inspect", model).output


def test_compile_then_cache_hit(model, tmp_path):
    first = json.loads(invoke("compile", model, "-o", tmp_path / "a", "--json").output)
    second = json.loads(invoke("compile", model, "-o", tmp_path / "b", "--json").output)
    assert not first["cache_hit"] and second["cache_hit"]
    assert first["graph_hash"] == second["graph_hash"]
    assert {p.name for p in (tmp_path / "b").iterdir()} == {
        "manifest.json",
        "model.so",
        "graph.onnx",
        "placement.json",
    }


def test_run_with_files_compare_and_save(artifact, tmp_path):
    np.save(tmp_path / "x.npy", np.ones((1, 3, 32, 32), np.float32))
    result = invoke(
        "run",
        artifact,
        "--input",
        f"x={tmp_path / 'x.npy'}",
        "--compare",
        "onnxruntime",
        "--save",
        tmp_path / "outs",
        "--json",
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["outputs"]
    assert row["within"] and row["max_abs_error"] < 1e-5
    assert np.load(tmp_path / "outs" / "y.npy").shape == (1, 10)


def test_run_exits_1_when_tolerance_is_exceeded(artifact):
    result = invoke(
        "run", artifact, "--random", "--compare", "onnxruntime", "--atol", "0", "--rtol", "0"
    )
    if "NO" in result.output:  # bit-exact agreement is possible; then nothing exceeds 0
        assert result.exit_code == 1 and "fix:" in result.output


def test_bench_reports_ratio_against_onnxruntime(model):
    result = invoke(
        "bench", model, "--vs", "onnxruntime", "--warmup", "1", "--repeat", "3", "--json"
    )
    assert result.exit_code == 0, result.output
    timings = {row["engine"]: row for row in json.loads(result.output)["timings"]}
    assert set(timings) == {"xpuport", "onnxruntime"}
    expected = timings["xpuport"]["median_ms"] / timings["onnxruntime"]["median_ms"]
    assert timings["onnxruntime"]["ratio"] == pytest.approx(expected)
    assert_user_error(invoke("bench", model, "--vs", "tensorrt"), "tensorrt")
    assert_user_error(invoke("bench", model, "--vs", "torch"), "--suite")
    assert_user_error(invoke("bench", model, "--batches", "1,8"), "--batches")


def test_bench_suite_writes_tables_with_every_peer(tmp_path, gemms_on_library):
    result = invoke("bench", "--suite", "--models", "mlp", "--batches", "2", "--warmup", "1",
                    "--repeat", "2", "--vs", "onnxruntime,torch", "--out", tmp_path / "b",
                    "--no-tuning")
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "b" / "bench.json").read_text())
    (row,) = table["rows"]
    assert (table["tuning"], row["tuned_kernels"]) == ("none", 0)
    assert (row["model"], row["batch"], table["peers"]) == ("mlp", 2, ["onnxruntime", "torch"])
    assert set(row["median_ms"]) == {"xpuport", "onnxruntime", "torch"}
    assert row["ratio"]["torch"] == pytest.approx(
        row["median_ms"]["xpuport"] / row["median_ms"]["torch"], rel=0.01)
    assert row["library_calls"] == 3  # the MLP's three Linear layers, sent to numpy here
    assert "| mlp | 2 | float32 |" in (tmp_path / "b" / "bench.md").read_text()
    assert "tuning records: none" in (tmp_path / "b" / "bench.md").read_text()
    assert_user_error(invoke("bench", "--suite", "--models", "nope"), "nope")
    assert_user_error(invoke("bench", "--suite", "--tuning-db", tmp_path, "--no-tuning"),
                      "--tuning-db")


def test_not_onnx_and_truncated_files(model, tmp_path):
    (tmp_path / "text.onnx").write_text("hello, not a model")
    assert_user_error(invoke("compile", tmp_path / "text.onnx", "-o", tmp_path / "o"), "text.onnx")
    (tmp_path / "cut.onnx").write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    assert_user_error(invoke("compile", tmp_path / "cut.onnx", "-o", tmp_path / "o"), "cut.onnx")
    assert_user_error(invoke("inspect", tmp_path / "missing.onnx"), "no such file")
    assert not (tmp_path / "o").exists()


def external_data_model(folder: Path, location: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.save_model(
        model, folder / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0
    )
    reloaded = onnx.load(folder / "m.onnx", load_external_data=False)
    for entry in reloaded.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(reloaded, folder / "m.onnx")
    return folder / "m.onnx"


def test_external_data_escaping_the_folder_is_refused(tmp_path):
    path = external_data_model(tmp_path / "model", "../secret.bin")
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    assert_user_error(invoke("compile", path, "-o", tmp_path / "o"), "outside the model's folder")


def test_missing_external_data_is_named(tmp_path):
    path = external_data_model(tmp_path / "model", "w.bin")
    (tmp_path / "model" / "w.bin").unlink()
    assert_user_error(invoke("compile", path, "-o", tmp_path / "o"), "w.bin", "missing")


def test_unknown_backend_and_profile(model, tmp_path):
    assert_user_error(invoke("compile", model, "-o", tmp_path / "o", "--backend", "tpu"), "tpu")
    assert_user_error(
        invoke("compile", model, "-o", tmp_path / "o", "--profile", "acme/x9"),
        "acme/x9",
        "generic/x86-64",
    )
    assert not (tmp_path / "o").exists()


def test_wrong_inputs_at_run_time(artifact, tmp_path):
    np.save(tmp_path / "x64.npy", np.ones((1, 3, 32, 32), np.float64))
    np.save(tmp_path / "small.npy", np.ones((1, 3, 16, 16), np.float32))
    assert_user_error(invoke("run", artifact, "--input", f"x={tmp_path / 'x64.npy'}"), "float64")
    assert_user_error(invoke("run", artifact, "--input", f"x={tmp_path / 'small.npy'}"), "axis 2")
    assert_user_error(invoke("run", artifact, "--input", f"img={tmp_path / 'small.npy'}"), "img")
    assert_user_error(invoke("run", artifact, "--input", "x=nofile.npy"), "nofile.npy")


def test_tampered_artifact_is_refused(artifact):
    library = artifact / "model.so"
    library.write_bytes(library.read_bytes() + b"\0")
    assert_user_error(invoke("run", artifact, "--random"), "model.so", "modified")


def test_compile_never_overwrites_a_users_folder(model, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert_user_error(invoke("compile", model, "-o", tmp_path / "mine"), "not an xpuport artifact")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_failed_compile_leaves_no_partial_artifact(tmp_path):
    # an op of an unknown domain: neither TVM nor onnxruntime (the host) can run it
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("Mystery", ["r"], ["y"], domain="com.example")],
        "mystery",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    path = tmp_path / "mystery.onnx"
    opsets = [helper.make_opsetid("", 20), helper.make_opsetid("com.example", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    result = invoke("compile", path, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "fix:" in result.output, result.output
    assert "Mystery" in result.output
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["mystery.onnx"]


def test_console_script_prints_no_traceback(tmp_path):
    script = Path(sys.executable).with_name("xpuport")
    executable = [str(script)] if script.exists() else [shutil.which("xpuport") or "xpuport"]
    done = subprocess.run(
        [*executable, "inspect", str(tmp_path / "nothing.onnx")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "no such file" in done.stderr and "Traceback" not in done.stderr


def test_compile_refuses_a_tuning_db_with_no_tuning(model, tmp_path):
    result = invoke("compile", model, "-o", tmp_path / "o", "--tuning-db", tmp_path, "--no-tuning")
    assert_user_error(result, "--tuning-db")
    assert not (tmp_path / "o").exists()


def test_conform_refuses_an_absent_device_before_drawing_its_progress_bar(tmp_path):
    from xpuport.backends import registry

    if registry.get_backend("rocm").is_available():
        pytest.skip("a rocm device is present")
    result = invoke("conform", "--backend", "rocm", "--ops", "Relu", "--out", tmp_path / "r")

    assert_user_error(result, "has no device", "xpuport compile --backend rocm")
    assert "rocm ops" not in result.output  # the progress bar's label
    assert not (tmp_path / "r").exists()
