"""ir/load.py: a sound model loads; anything else is refused with the file named and a fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from xpuport.errors import ExternalDataError, ModelFileError
from xpuport.ir.load import load_model


def _model(weight_elems: int = 4) -> onnx.ModelProto:
    """Y = X + W with W an initializer of `weight_elems` float32 values."""
    weight = numpy_helper.from_array(np.arange(weight_elems, dtype=np.float32), name="W")
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])],
        "add",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [weight_elems])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [weight_elems])],
        initializer=[weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _save_external(model: onnx.ModelProto, path: Path) -> None:
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="w.bin",
        size_threshold=0,
    )


def _set_location(model_path: Path, location: str) -> None:
    model = onnx.load_model(str(model_path), load_external_data=False)
    entries = model.graph.initializer[0].external_data
    next(e for e in entries if e.key == "location").value = location
    onnx.save_model(model, str(model_path))


def _assert_error(info: pytest.ExceptionInfo, *names: str) -> None:
    for name in names:
        assert name in info.value.message
    assert info.value.fix.strip()


def test_valid_model_loads(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(_model(), str(path))

    model = load_model(path)

    assert [n.op_type for n in model.graph.node] == ["Add"]
    np.testing.assert_array_equal(
        numpy_helper.to_array(model.graph.initializer[0]), np.arange(4, dtype=np.float32)
    )


def test_missing_file(tmp_path):
    path = tmp_path / "absent.onnx"
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    _assert_error(info, str(path), "no such file")


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelFileError) as info:
        load_model(tmp_path)
    _assert_error(info, str(tmp_path))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.touch()
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    _assert_error(info, str(path), "empty")


@pytest.mark.parametrize(
    "content",
    [
        np.random.default_rng(0).bytes(4096),
        b"this is a text file, not an ONNX model\n" * 20,
    ],
    ids=["random-bytes", "text"],
)
def test_not_onnx(tmp_path, content):
    path = tmp_path / "junk.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert not isinstance(info.value, ExternalDataError)
    _assert_error(info, str(path))


def test_truncated_model(tmp_path):
    data = _model(weight_elems=64 * 1024).SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    _assert_error(info, str(path))


def test_checker_failure(tmp_path):
    # A node with an op no ONNX opset defines fails the checker, though it parses.
    model = _model()
    model.graph.node[0].op_type = "NoSuchOp"
    path = tmp_path / "bad.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    _assert_error(info, str(path), "checker")


def test_external_data_beside_model_loads(tmp_path):
    path = tmp_path / "m.onnx"
    _save_external(_model(weight_elems=256), path)
    assert (tmp_path / "w.bin").is_file()

    model = load_model(path)

    weight = model.graph.initializer[0]
    assert not onnx.external_data_helper.uses_external_data(weight)
    np.testing.assert_array_equal(numpy_helper.to_array(weight), np.arange(256, dtype=np.float32))


def test_external_data_outside_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.onnx"
    _save_external(_model(), path)
    (folder / "w.bin").rename(tmp_path / "evil.bin")  # the bytes exist, but outside
    _set_location(path, "../evil.bin")

    with pytest.raises(ExternalDataError) as info:
        load_model(path)
    _assert_error(info, str(path), "'W'", "../evil.bin", "outside")


def test_external_data_absolute_path_outside_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.onnx"
    _save_external(_model(), path)
    evil = tmp_path / "evil.bin"
    (folder / "w.bin").rename(evil)
    _set_location(path, str(evil))

    with pytest.raises(ExternalDataError) as info:
        load_model(path)
    _assert_error(info, str(path), "'W'", "outside")


def test_external_data_missing(tmp_path):
    path = tmp_path / "m.onnx"
    _save_external(_model(), path)
    (tmp_path / "w.bin").unlink()

    with pytest.raises(ExternalDataError) as info:
        load_model(path)
    _assert_error(info, str(path), "'W'", "w.bin", "missing")


def test_external_data_truncated(tmp_path):
    path = tmp_path / "m.onnx"
    _save_external(_model(weight_elems=256), path)
    data_file = tmp_path / "w.bin"
    data_file.write_bytes(data_file.read_bytes()[:100])

    with pytest.raises(ExternalDataError) as info:
        load_model(path)
    _assert_error(info, str(path), "'W'", "w.bin", "100 bytes")


def test_external_data_in_a_subfolder_loads(tmp_path):
    path = tmp_path / "m.onnx"
    _save_external(_model(), path)
    (tmp_path / "weights").mkdir()
    (tmp_path / "w.bin").rename(tmp_path / "weights" / "w.bin")
    _set_location(path, "weights/w.bin")

    model = load_model(path)

    np.testing.assert_array_equal(
        numpy_helper.to_array(model.graph.initializer[0]), np.arange(4, dtype=np.float32)
    )


def test_external_data_symlink_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.onnx"
    _save_external(_model(), path)
    (folder / "w.bin").rename(tmp_path / "evil.bin")
    (folder / "w.bin").symlink_to(tmp_path / "evil.bin")

    with pytest.raises(ExternalDataError) as info:
        load_model(path)
    _assert_error(info, str(path), "'W'", "outside")


def _set_external_field(model_path: Path, key: str, value: str) -> None:
    model = onnx.load_model(str(model_path), load_external_data=False)
    entries = model.graph.initializer[0].external_data
    entry = next((e for e in entries if e.key == key), None) or entries.add()
    entry.key, entry.value = key, value
    onnx.save_model(model, str(model_path))


@pytest.mark.parametrize("offset", ["abc", "-8"], ids=["not-a-number", "negative"])
def test_malformed_external_data_offset_is_refused(tmp_path, offset):
    path = tmp_path / "m.onnx"
    _save_external(_model(), path)
    _set_external_field(path, "offset", offset)

    with pytest.raises(ExternalDataError) as info:
        load_model(path)
    _assert_error(info, str(path), "'W'")
