"""lowering/column_blocks.py: a projection read only in column blocks through layout ops and
takes is sliced directly, and nothing else is."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import xpuport
from xpuport.lowering.column_blocks import column_blocks_pass
from xpuport.lowering.to_relax import to_relax

ROWS, D = 16, 8


def _projection(path, blocks_last: bool = True, extra_output: bool = False) -> str:
    """q, k, v = x @ W + b, split as attention exports do: reshape to (rows, 3, D) (or, with
    `blocks_last` False, to (rows, D, 3): interleaved columns), move the 3 first, gather."""
    rng = np.random.default_rng(0)
    split_shape, perm = ([ROWS, 3, D], [1, 0, 2]) if blocks_last else ([ROWS, D, 3], [2, 0, 1])
    initializers = [
        numpy_helper.from_array(rng.standard_normal((D, 3 * D)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(3 * D).astype(np.float32), "b"),
        numpy_helper.from_array(np.array(split_shape, dtype=np.int64), "shape")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["p"]),
             helper.make_node("Reshape", ["p", "shape"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=perm)]
    outputs = []
    for i, name in enumerate("qkv"):
        initializers.append(numpy_helper.from_array(np.array(i, dtype=np.int64), f"i{i}"))
        nodes.append(helper.make_node("Gather", ["t", f"i{i}"], [name], axis=0))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [ROWS, D]))
    if extra_output:
        outputs.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, [ROWS, 3 * D]))
    graph = helper.make_graph(
        nodes, "qkv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [ROWS, D])],
        outputs, initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def _rewritten(path: str) -> str:
    return str(column_blocks_pass()(to_relax(onnx.load(path))).script())


def test_each_take_becomes_a_slice_of_the_projection(tmp_path):
    script = _rewritten(_projection(tmp_path / "p.onnx"))

    assert script.count("R.strided_slice(") == 3 and "R.take" not in script
    for block in ("(0,), (8,)", "(8,), (16,)", "(16,), (24,)"):  # q, k, v: columns of x @ W
        assert f"(1,), {block}, assume_inbound=True)" in script
    assert "R.permute_dims" not in script and script.count("R.matmul(") == 1


def test_interleaved_columns_are_sliced_from_the_reshaped_tensor(tmp_path):
    script = _rewritten(_projection(tmp_path / "p.onnx", blocks_last=False))

    # q takes columns 0, 3, 6...: no block of x @ W, but column 0 of its (16, 8, 3) reshape
    assert "R.take" not in script
    for block in ("(0,), (1,)", "(1,), (2,)", "(2,), (3,)"):
        assert f"(2,), {block}, assume_inbound=True)" in script


def test_an_intermediate_read_elsewhere_keeps_the_chain(tmp_path):
    script = _rewritten(_projection(tmp_path / "p.onnx", extra_output=True))

    assert "R.strided_slice" not in script and script.count("R.take") == 3


@pytest.mark.parametrize("blocks_last", [True, False])
def test_sliced_projection_matches_onnxruntime(tmp_path, blocks_last):
    path = _projection(tmp_path / "p.onnx", blocks_last)
    feeds = {"x": np.random.default_rng(1).standard_normal((ROWS, D)).astype(np.float32)}
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False)
    expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)

    for got, want in zip(artifact.run(feeds).values(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
