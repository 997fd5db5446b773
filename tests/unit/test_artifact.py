"""lowering/artifact.py and xpuport/cache.py: verified artifacts, atomic installs, the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import xpuport
from xpuport.backends.base import CompileOptions
from xpuport.backends.cpu import CpuBackend
from xpuport.errors import ArtifactError, CompileError, InputError
from xpuport.lowering.artifact import GRAPH, LIBRARY, MANIFEST, PLACEMENT, read_manifest

W = (np.arange(12, dtype=np.float32).reshape(3, 4) - 6) / 10
B = np.array([1, -2, 3, -4], np.float32)


def _write_model(path: Path) -> Path:
    """y = x @ W + B and r = Relu(x): x is [2, 3] float32."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Add", ["h", "B"], ["y"]),
            helper.make_node("Relu", ["x"], ["r"]),
        ],
        "matmul_add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 3]),
        ],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    return path


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One model and one pristine artifact per module (no cache: the cache is per test)."""
    root = tmp_path_factory.mktemp("built")
    model = _write_model(root / "model.onnx")
    xpuport.compile(model, output_dir=root / "pristine", use_cache=False)
    return model, root / "pristine"


@pytest.fixture
def model_path(built, tmp_path):
    return shutil.copy(built[0], tmp_path / "model.onnx")


@pytest.fixture
def artifact_dir(built, tmp_path):
    """A private copy of the pristine artifact, free to tamper with."""
    return Path(shutil.copytree(built[1], tmp_path / "art"))


def _refused(path: Path, *fragments: str) -> ArtifactError:
    with pytest.raises(ArtifactError) as info:
        xpuport.load(path)
    for fragment in fragments:
        assert fragment in info.value.message
    assert info.value.fix.strip()
    return info.value


def _partials(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial" in p.name or ".old-" in p.name]


# --- a good artifact ---------------------------------------------------------------------------


def test_artifact_layout_and_manifest(artifact_dir):
    assert sorted(p.name for p in artifact_dir.iterdir()) == sorted(
        [GRAPH, MANIFEST, LIBRARY, PLACEMENT])
    manifest = read_manifest(artifact_dir)
    assert manifest["backend"] == "cpu"
    assert manifest["profile"] == CpuBackend().default_profile()  # the host's ISA level
    assert manifest["inputs"] == [{"name": "x", "shape": [2, 3], "dtype": "float32"}]
    assert [spec["name"] for spec in manifest["outputs"]] == ["y", "r"]
    assert set(manifest["files"]) == {GRAPH, LIBRARY, PLACEMENT}
    assert manifest["versions"]["xpuport"] == xpuport.__version__


def test_load_verifies_and_runs(artifact_dir):
    artifact = xpuport.load(artifact_dir)
    x = _x()

    outputs = artifact.run({"x": x})

    assert set(outputs) == {"y", "r"}
    np.testing.assert_allclose(outputs["y"], x @ W + B, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["r"], np.maximum(x, 0), rtol=1e-5, atol=1e-6)
    assert artifact.backend_name == "cpu"
    assert artifact.graph_path.is_file()


def test_run_checks_inputs(artifact_dir):
    artifact = xpuport.load(artifact_dir)

    with pytest.raises(InputError):
        artifact.run({"x": _x().astype(np.float64)})


# --- tampering is refused ----------------------------------------------------------------------


def test_modified_library_is_refused(artifact_dir):
    library = artifact_dir / LIBRARY
    data = bytearray(library.read_bytes())
    data[len(data) // 2] ^= 0xFF
    library.write_bytes(bytes(data))

    _refused(artifact_dir, "changed: ['model.so']")


def test_deleted_graph_is_refused(artifact_dir):
    (artifact_dir / GRAPH).unlink()

    _refused(artifact_dir, "missing: ['graph.onnx']")


def test_extra_file_is_refused(artifact_dir):
    (artifact_dir / "notes.txt").write_text("hello")

    _refused(artifact_dir, "unlisted: ['notes.txt']")


def test_other_tvm_version_is_refused(artifact_dir):
    path = artifact_dir / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["versions"]["tvm"] = "0.0.0"
    path.write_text(json.dumps(manifest))

    error = _refused(artifact_dir, "tvm 0.0.0")
    assert "xpuport" not in error.message.split("built with", 1)[1]  # only tvm differs


def test_other_format_version_is_refused(artifact_dir):
    path = artifact_dir / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 99
    path.write_text(json.dumps(manifest))

    _refused(artifact_dir, "format 99")


def test_unreadable_manifest_is_refused(artifact_dir):
    (artifact_dir / MANIFEST).write_text("{not json")

    _refused(artifact_dir, "not valid JSON")


def test_directory_without_manifest_is_refused(tmp_path):
    _refused(tmp_path, "no manifest.json")


# --- compile's output directory ----------------------------------------------------------------


def test_compile_refuses_a_directory_of_user_files(model_path, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    precious = out / "thesis.tex"
    precious.write_text("years of work")

    with pytest.raises(ArtifactError) as info:
        xpuport.compile(model_path, output_dir=out)

    assert str(out) in info.value.message
    assert info.value.fix
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    assert precious.read_text() == "years of work"


def test_compile_refuses_a_file_as_output_dir(model_path, tmp_path):
    out = tmp_path / "file"
    out.write_text("keep me")

    with pytest.raises(ArtifactError):
        xpuport.compile(model_path, output_dir=out)

    assert out.read_text() == "keep me"


def test_compile_into_an_empty_directory(model_path, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()

    artifact = xpuport.compile(model_path, output_dir=out)

    assert artifact.path == out
    assert (out / MANIFEST).is_file()
    assert _partials(tmp_path) == []


def test_compile_replaces_an_existing_artifact(model_path, artifact_dir):
    (artifact_dir / "stale.txt").write_text("from an earlier compile")  # still has a manifest

    artifact = xpuport.compile(model_path, output_dir=artifact_dir)

    assert sorted(p.name for p in artifact_dir.iterdir()) == sorted(
        [GRAPH, MANIFEST, LIBRARY, PLACEMENT])
    np.testing.assert_allclose(artifact.run({"x": _x()})["y"], _x() @ W + B, rtol=1e-5, atol=1e-6)
    assert _partials(artifact_dir.parent) == []


def _fail_build(*args, **kwargs):
    raise CompileError("TVM failed to build (injected)", "none")


def _cached_entries(cache: Path) -> list[str]:
    root = cache / "compile"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_failed_compile_leaves_nothing(model_path, tmp_path, monkeypatch, isolated_cache):
    monkeypatch.setattr("xpuport.api.build", _fail_build)
    out = tmp_path / "art"

    with pytest.raises(CompileError, match="injected"):
        xpuport.compile(model_path, output_dir=out)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert _cached_entries(isolated_cache) == []


def test_failed_write_leaves_no_partial_folder(model_path, tmp_path, monkeypatch, isolated_cache):
    def half_written(staging, *args, **kwargs):
        (staging / LIBRARY).write_bytes(b"half a library")
        raise OSError("disk full (injected)")

    monkeypatch.setattr("xpuport.api.write_artifact", half_written)
    out = tmp_path / "art"

    with pytest.raises(OSError, match="disk full"):
        xpuport.compile(model_path, output_dir=out)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert _cached_entries(isolated_cache) == []


def test_failed_compile_keeps_the_previous_artifact(model_path, artifact_dir, monkeypatch):
    before = {p.name: p.read_bytes() for p in artifact_dir.iterdir()}
    monkeypatch.setattr("xpuport.api.build", _fail_build)

    with pytest.raises(CompileError):
        xpuport.compile(model_path, output_dir=artifact_dir)

    assert {p.name: p.read_bytes() for p in artifact_dir.iterdir()} == before
    xpuport.load(artifact_dir)


# --- the compile cache -------------------------------------------------------------------------


def test_second_compile_is_a_cache_hit(model_path, tmp_path):
    first: list[str] = []
    second: list[str] = []

    xpuport.compile(model_path, output_dir=tmp_path / "a", on_step=first.append)
    artifact = xpuport.compile(model_path, output_dir=tmp_path / "b", on_step=second.append)

    assert "build" in first
    assert "cache hit" not in first
    assert "cache hit" in second
    assert "build" not in second
    np.testing.assert_allclose(artifact.run({"x": _x()})["y"], _x() @ W + B, rtol=1e-5, atol=1e-6)


def test_compile_without_output_dir_uses_the_cache(model_path, isolated_cache):
    artifact = xpuport.compile(model_path)

    assert artifact.path.parent == isolated_cache / "compile"
    assert artifact.run({"x": _x()})["r"].shape == (2, 3)


def test_no_cache_and_no_output_dir_is_an_error(model_path):
    with pytest.raises(ValueError, match="output_dir"):
        xpuport.compile(model_path, use_cache=False)


def test_use_cache_false_always_builds(model_path, tmp_path):
    xpuport.compile(model_path, output_dir=tmp_path / "a")
    steps: list[str] = []

    xpuport.compile(model_path, output_dir=tmp_path / "b", use_cache=False, on_step=steps.append)

    assert "build" in steps
    assert "cache hit" not in steps


def test_options_are_part_of_the_cache_key(model_path, tmp_path):
    xpuport.compile(model_path, output_dir=tmp_path / "a")
    steps: list[str] = []

    xpuport.compile(
        model_path,
        output_dir=tmp_path / "b",
        options=CompileOptions(opt_level=1),
        on_step=steps.append,
    )

    assert "build" in steps
    assert "cache hit" not in steps


def test_a_change_to_xpuports_own_code_is_part_of_the_cache_key(model_path, tmp_path,
                                                                 monkeypatch):
    """A changed schedule or pass makes other code at the same version: not a cache hit."""
    from xpuport import cache

    xpuport.compile(model_path, output_dir=tmp_path / "a")
    monkeypatch.setattr(cache, "source_digest", lambda: "another xpuport")
    steps: list[str] = []

    xpuport.compile(model_path, output_dir=tmp_path / "b", on_step=steps.append)

    assert "build" in steps and "cache hit" not in steps


def test_the_source_digest_reads_every_subpackage_and_changes_with_a_file(tmp_path,
                                                                          monkeypatch):
    from xpuport import cache

    names = {name for name, _ in cache._source_files()}
    assert {"__init__.py", "cli.py", "lowering/pipeline.py", "backends/cpu_schedules.py",
            "hw_profiles/generic/x86-64-v3.toml"} <= names
    assert not any("__pycache__" in name for name in names)
    source = tmp_path / "pipeline.py"
    source.write_text("A = 1\n")
    monkeypatch.setattr(cache, "_source_files", lambda: [("lowering/pipeline.py", source)])
    before = cache.source_digest.__wrapped__()
    source.write_text("A = 2\n")
    assert cache.source_digest.__wrapped__() != before


def test_corrupted_cache_entry_is_rebuilt(model_path, tmp_path, isolated_cache):
    xpuport.compile(model_path, output_dir=tmp_path / "a")
    (entry,) = (isolated_cache / "compile").iterdir()
    library = entry / LIBRARY
    library.write_bytes(library.read_bytes() + b"tampered")
    steps: list[str] = []

    artifact = xpuport.compile(model_path, output_dir=tmp_path / "b", on_step=steps.append)

    assert "cache hit" not in steps
    assert "build" in steps
    assert not (tmp_path / "b" / LIBRARY).read_bytes().endswith(b"tampered")
    read_manifest(entry)  # the entry was rebuilt, and verifies again
    assert not library.read_bytes().endswith(b"tampered")
    np.testing.assert_allclose(artifact.run({"x": _x()})["y"], _x() @ W + B, rtol=1e-5, atol=1e-6)


def test_cache_leaves_no_staging_folders(model_path, isolated_cache):
    xpuport.compile(model_path)
    xpuport.compile(model_path)

    names = [p.name for p in (isolated_cache / "compile").iterdir()]
    assert len(names) == 1
    assert not names[0].startswith(".")


# --- known bugs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["[]", '{"format_version": 1, "versions": null}'])
def test_manifest_of_the_wrong_shape_is_refused(artifact_dir, content):
    (artifact_dir / MANIFEST).write_text(content)

    _refused(artifact_dir)


def test_cache_entry_with_a_non_object_manifest_is_rebuilt(model_path, tmp_path, isolated_cache):
    xpuport.compile(model_path, output_dir=tmp_path / "a")
    (entry,) = (isolated_cache / "compile").iterdir()
    (entry / MANIFEST).write_text("[]")
    steps: list[str] = []

    xpuport.compile(model_path, output_dir=tmp_path / "b", on_step=steps.append)

    assert "build" in steps
    read_manifest(entry)
