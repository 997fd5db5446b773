"""ir/inspect.py: signature, op inventory, parameter count, content hash, node walk."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from xpuport.ir.inspect import TensorSpec, graph_hash, iter_nodes, summarize
from xpuport.ir.load import load_model


def _mlp(weight_value: float = 0.5) -> onnx.ModelProto:
    """y = Relu(Relu(x @ W1 + b1) @ W2); x is [batch, 4] with a symbolic batch."""
    w1 = numpy_helper.from_array(np.full((4, 8), weight_value, np.float32), "W1")
    b1 = numpy_helper.from_array(np.zeros(8, np.float32), "b1")
    w2 = numpy_helper.from_array(np.ones((8, 3), np.float16), "W2")
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Cast", ["h2"], ["h3"], to=TensorProto.FLOAT16),
        helper.make_node("MatMul", ["h3", "W2"], ["h4"]),
        helper.make_node("Relu", ["h4"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 3])],
        initializer=[w1, b1, w2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _if_model() -> onnx.ModelProto:
    """y = If(cond, then: Neg(x), else: Abs(Sigmoid(x)))."""
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y_then = helper.make_tensor_value_info("y_then", TensorProto.FLOAT, [2])
    y_else = helper.make_tensor_value_info("y_else", TensorProto.FLOAT, [2])
    then_graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y_then"])], "then", [], [y_then]
    )
    else_graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Abs", ["s"], ["y_else"])],
        "else",
        [],
        [y_else],
    )
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)
    graph = helper.make_graph(
        [node],
        "branchy",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, []), x_info],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_summary_op_counts_and_node_count():
    summary = summarize(_mlp())

    assert dict(summary.op_counts) == {"MatMul": 2, "Relu": 2, "Add": 1, "Cast": 1}
    # Most frequent first, ties by name.
    assert [op for op, _ in summary.op_counts] == ["MatMul", "Relu", "Add", "Cast"]
    assert summary.node_count == 6
    assert summary.opset == 20


def test_summary_signature_has_symbolic_dims():
    summary = summarize(_mlp())

    assert summary.inputs == (TensorSpec("x", ("batch", 4), "float32"),)
    assert summary.outputs == (TensorSpec("y", ("batch", 3), "float16"),)
    assert not summary.inputs[0].is_static


def test_summary_names_an_unnamed_dynamic_dim():
    model = _mlp()
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.ClearField("dim_param")

    (spec,) = summarize(model).inputs

    assert isinstance(spec.shape[0], str)
    assert spec.shape[0]
    assert spec.shape[1] == 4


def test_summary_parameters():
    summary = summarize(_mlp())

    assert summary.parameter_count == 4 * 8 + 8 + 8 * 3
    assert summary.parameter_bytes == (4 * 8 + 8) * 4 + 8 * 3 * 2


def test_summary_leaves_initializers_listed_as_inputs_out_of_the_signature():
    model = _mlp()
    w1 = helper.make_tensor_value_info("W1", TensorProto.FLOAT, [4, 8])
    model.graph.input.append(w1)  # IR < 4 style: weights also listed as graph inputs

    summary = summarize(model)

    assert [spec.name for spec in summary.inputs] == ["x"]


def test_summary_names_custom_domain_ops():
    model = _mlp()
    model.graph.node[2].domain = "com.vendor"
    model.opset_import.append(helper.make_opsetid("com.vendor", 1))

    counts = dict(summarize(model).op_counts)

    assert counts["com.vendor::Relu"] == 1
    assert counts["Relu"] == 1


def test_graph_hash_is_stable_across_loads(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(_mlp(), str(path))

    first, second = load_model(path), load_model(path)

    assert graph_hash(first) == graph_hash(second)
    assert summarize(first).graph_hash == graph_hash(first)
    assert len(graph_hash(first)) == 64


def test_graph_hash_changes_with_a_weight():
    assert graph_hash(_mlp(0.5)) == graph_hash(_mlp(0.5))
    assert graph_hash(_mlp(0.5)) != graph_hash(_mlp(0.25))


def test_graph_hash_changes_with_one_weight_element():
    model = _mlp()
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    array = numpy_helper.to_array(changed.graph.initializer[0]).copy()
    array[3, 7] = np.nextafter(array[3, 7], np.float32(1))
    changed.graph.initializer[0].CopyFrom(numpy_helper.from_array(array, "W1"))

    assert graph_hash(changed) != graph_hash(model)


def test_graph_hash_ignores_how_weights_were_stored(tmp_path):
    inline_path, external_path = tmp_path / "inline.onnx", tmp_path / "external.onnx"
    onnx.save_model(_mlp(), str(inline_path))
    onnx.save_model(
        _mlp(),
        str(external_path),
        save_as_external_data=True,
        location="w.bin",
        size_threshold=0,
    )

    assert graph_hash(load_model(inline_path)) == graph_hash(load_model(external_path))


def test_iter_nodes_descends_into_if_branches():
    model = _if_model()

    ops = [node.op_type for node in iter_nodes(model.graph)]

    assert sorted(ops) == ["Abs", "If", "Neg", "Sigmoid"]
    assert ops[0] == "If"  # the parent before its bodies
    assert dict(summarize(model).op_counts) == {"If": 1, "Neg": 1, "Sigmoid": 1, "Abs": 1}


def test_iter_nodes_descends_into_nested_subgraphs():
    inner = _if_model().graph.node[0]
    outer_then = helper.make_graph(
        [inner], "outer_then", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]
    )
    outer_else = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"])],
        "outer_else",
        [],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2])],
    )
    outer = helper.make_node(
        "If", ["cond"], ["out"], then_branch=outer_then, else_branch=outer_else
    )
    graph = helper.make_graph([outer], "nested", [], [])

    ops = sorted(node.op_type for node in iter_nodes(graph))

    assert ops == ["Abs", "If", "If", "Neg", "Relu", "Sigmoid"]


@pytest.mark.parametrize(
    "spec",
    [
        TensorSpec("x", ("batch", 3, 224, 224), "float32"),
        TensorSpec("scalar", (), "int64"),
        TensorSpec("mask", (1, "seq"), "bool"),
    ],
    ids=["symbolic", "scalar", "bool"],
)
def test_tensor_spec_json_round_trip(spec):
    data = json.loads(json.dumps(spec.to_json()))

    assert TensorSpec.from_json(data) == spec
    assert data == {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype}


def test_tensor_spec_is_static():
    assert TensorSpec("x", (1, 2), "float32").is_static
    assert not TensorSpec("x", (1, "n"), "float32").is_static
