"""lowering/library_choice.py through `xpuport.tune` and `compile`: both sides tuned and timed,
the faster kept in the database, compile following it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

import xpuport
from xpuport.backends.base import CompileOptions
from xpuport.cache import source_digest
from xpuport.cli import app
from xpuport.errors import TuningError
from xpuport.ir.inspect import graph_hash
from xpuport.ir.load import load_model
from xpuport.lowering.library_choice import CHOICES, LibraryChoice, choice_key, save_choice

PROFILE = "generic/x86-64"
ROWS, K, COLS = 8, 1100, 8  # both operands computed at run time and K > TVM_GEMM_MAX_K:
# library dispatch sends the MatMul to BLAS (lowering/tvm_kernels.py), TVM takes it without


@pytest.fixture(scope="module")
def matmul_add(tmp_path_factory) -> str:
    nodes = [helper.make_node("MatMul", ["a", "b"], ["p"]),
             helper.make_node("Add", ["p", "c"], ["y"])]
    shapes = {"a": [ROWS, K], "b": [K, COLS], "c": [ROWS, COLS], "y": [ROWS, COLS]}
    value = {name: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
             for name, shape in shapes.items()}
    graph = helper.make_graph(nodes, "matmul_add", [value["a"], value["b"], value["c"]],
                              [value["y"]])
    path = tmp_path_factory.mktemp("choice") / "matmul_add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@pytest.fixture(scope="module")
def tuned(matmul_add, tmp_path_factory):
    """`xpuport tune` as a user runs it: the database, and what the command said."""
    folder = tmp_path_factory.mktemp("db") / "x86"
    result = CliRunner().invoke(app, ["tune", matmul_add, "--profile", PROFILE, "--trials", "6",
                                      "--db", str(folder)])
    assert result.exit_code == 0, result.output
    return folder, " ".join(result.output.split())  # as rich wrapped it


def _key(model: str, code: str = "") -> str:
    return choice_key(graph_hash(load_model(model)), CompileOptions().to_json(),
                      code or source_digest())


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"a": rng.standard_normal((ROWS, K)).astype(np.float32),
            "b": rng.standard_normal((K, COLS)).astype(np.float32),
            "c": rng.standard_normal((ROWS, COLS)).astype(np.float32)}


def _copy(database, folder):
    """The database's files, without MetaSchedule's logs folder."""
    return shutil.copytree(database, folder, ignore=shutil.ignore_patterns("logs"))


def _compiled(model: str, folder, out):
    artifact = xpuport.compile(model, "cpu", PROFILE, out, tuning=folder)
    feeds = _feeds()
    np.testing.assert_allclose(artifact.run(feeds)["y"], feeds["a"] @ feeds["b"] + feeds["c"],
                               rtol=1e-4, atol=1e-4)
    return artifact


def test_tune_tunes_both_sides_and_keeps_the_measured_choice(matmul_add, tuned):
    folder, said = tuned
    # the Add between library calls, then the MatMul + Add of the model without them
    assert "tuned 2 kernel(s)" in said
    saved = json.loads((folder / CHOICES).read_text())
    assert list(saved) == [_key(matmul_add)]
    choice = LibraryChoice(saved[_key(matmul_add)]["library_ms"],
                           saved[_key(matmul_add)]["tvm_ms"])
    assert choice.library_ms > 0 and choice.tvm_ms > 0
    assert saved[_key(matmul_add)] == choice.to_json()  # the side kept is the faster
    assert f"{choice.library_ms:.3f} ms with library dispatch, {choice.tvm_ms:.3f} ms " \
        "without" in said
    kept = "library dispatch" if choice.library else "TVM's tuned kernels"
    assert f"compile will use {kept}" in said


@pytest.mark.parametrize("library", [True, False])
def test_compile_follows_the_databases_choice(matmul_add, tuned, tmp_path, library):
    folder = _copy(tuned[0], tmp_path / "db")
    choice = LibraryChoice(library_ms=1.0, tvm_ms=2.0) if library else \
        LibraryChoice(library_ms=2.0, tvm_ms=1.0)
    save_choice(folder, _key(matmul_add), choice)
    artifact = _compiled(matmul_add, folder, tmp_path / "out")
    assert artifact.manifest["tuning"]["library_choice"] == choice.to_json()
    assert bool(artifact.manifest["library_calls"]) == library
    assert artifact.manifest["options"]["library"] is True  # what was asked for, kept


def test_a_changed_choice_is_a_new_artifact(matmul_add, tuned, tmp_path):
    """The choice is part of the database's digest: a cached build never outlives it."""
    folder = _copy(tuned[0], tmp_path / "db")
    save_choice(folder, _key(matmul_add), LibraryChoice(library_ms=1.0, tvm_ms=2.0))
    first = xpuport.compile(matmul_add, "cpu", PROFILE, tuning=folder)
    save_choice(folder, _key(matmul_add), LibraryChoice(library_ms=2.0, tvm_ms=1.0))
    second = xpuport.compile(matmul_add, "cpu", PROFILE, tuning=folder)
    assert first.path != second.path
    assert first.manifest["library_calls"] and not second.manifest["library_calls"]


def test_a_choice_timed_by_other_xpuport_code_is_not_followed(matmul_add, tuned, tmp_path):
    """New schedules can turn a choice around: compile dispatches as untuned instead."""
    folder = _copy(tuned[0], tmp_path / "db")
    (folder / CHOICES).unlink()
    save_choice(folder, _key(matmul_add, code="an-older-xpuport"),
                LibraryChoice(library_ms=2.0, tvm_ms=1.0))
    artifact = _compiled(matmul_add, folder, tmp_path / "out")
    assert artifact.manifest["tuning"]["library_choice"] is None
    assert artifact.manifest["library_calls"]  # library dispatch, as asked for


def test_no_library_dispatch_asked_means_no_choice(matmul_add, tuned, tmp_path):
    folder, _ = tuned
    artifact = xpuport.compile(matmul_add, "cpu", PROFILE, tmp_path / "out", tuning=folder,
                               options=CompileOptions(library=False))
    assert artifact.manifest["tuning"]["library_choice"] is None
    assert not artifact.manifest["library_calls"]


def test_tune_without_library_dispatch_measures_no_choice(matmul_add, tmp_path):
    result = xpuport.tune(matmul_add, "cpu", PROFILE, trials=2, database=tmp_path,
                          options=CompileOptions(library=False))
    assert result.tasks == 1 and result.library_choice is None
    assert not (tmp_path / CHOICES).exists()


def test_an_unreadable_choice_file_is_named_with_its_fix(matmul_add, tuned, tmp_path):
    folder = _copy(tuned[0], tmp_path / "db")
    (folder / CHOICES).write_text('{"abc": {"library_ms": "fast"}}')
    with pytest.raises(TuningError, match=CHOICES) as raised:
        xpuport.compile(matmul_add, "cpu", PROFILE, tmp_path / "out", tuning=folder)
    assert "xpuport tune" in raised.value.fix
    assert not (tmp_path / "out").exists()


def test_the_key_ignores_what_the_choice_is_about():
    """Library dispatch and the database folder do not split a model's choice; other options
    (its schedules, fast math) do: the choice was measured with them."""
    base = CompileOptions().to_json()
    assert choice_key("h", base, "c") == choice_key("h", {**base, "library": False,
                                                          "tuning_db": "/elsewhere"}, "c")
    assert choice_key("h", base, "c") != choice_key("h", {**base, "fast_math": False}, "c")
    assert choice_key("h", base, "c") != choice_key("g", base, "c")
    assert choice_key("h", base, "c") != choice_key("h", base, "d")
    assert LibraryChoice(library_ms=1.0, tvm_ms=1.0).library  # a tie keeps the library


def test_a_budget_spent_before_tvms_side_says_so_and_makes_no_choice(matmul_add, tmp_path):
    """The Add between library calls alone takes longer than 1 s to tune (its builder and
    runner start): nothing is left for the model without library dispatch."""
    result = xpuport.tune(matmul_add, "cpu", PROFILE, trials=6, budget=1, database=tmp_path)
    assert result.out_of_budget and result.library_choice is None
    assert result.tasks == 1
    assert not (tmp_path / CHOICES).exists()
