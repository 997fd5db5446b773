"""ir/canonicalize.py: pinned opset, same numbers, folded, pruned, shaped, input untouched."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from xpuport.errors import CanonicalizeError
from xpuport.ir.canonicalize import PINNED_OPSET, canonicalize


def _convnet(opset: int) -> onnx.ModelProto:
    """Conv → BatchNormalization → Relu → MaxPool → Flatten → Dropout → Gemm."""
    rng = np.random.default_rng(0)

    def weight(name: str, array: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(array.astype(np.float32), name)

    initializers = [
        weight("conv_w", rng.standard_normal((4, 3, 3, 3))),
        weight("conv_b", rng.standard_normal(4)),
        weight("bn_scale", rng.uniform(0.5, 1.5, 4)),
        weight("bn_bias", rng.standard_normal(4)),
        weight("bn_mean", rng.standard_normal(4)),
        weight("bn_var", rng.uniform(0.5, 1.5, 4)),
        weight("fc_w", rng.standard_normal((5, 4 * 4 * 4))),
        weight("fc_b", rng.standard_normal(5)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["conv", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"]
        ),
        helper.make_node("Relu", ["bn"], ["relu"]),
        helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Dropout", ["flat"], ["drop"]),
        helper.make_node("Gemm", ["drop", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _const_model(opset: int = PINNED_OPSET) -> onnx.ModelProto:
    """z = Relu(x * (Constant a + Constant b)), plus a dead Neg(x) whose output is unused."""

    def const(name: str, values: list[float]) -> onnx.NodeProto:
        value = numpy_helper.from_array(np.array(values, np.float32))
        return helper.make_node("Constant", [], [name], value=value)

    nodes = [
        const("a", [1, 2, 3]),
        const("b", [10, 20, 30]),
        helper.make_node("Add", ["a", "b"], ["ab"]),
        helper.make_node("Mul", ["x", "ab"], ["y"]),
        helper.make_node("Neg", ["x"], ["unused"]),
        helper.make_node("Relu", ["y"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "consts",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _default_opset(model: onnx.ModelProto) -> int:
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def test_opset8_model_is_converted_and_computes_the_same():
    model = _convnet(opset=8)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)

    canonical = canonicalize(model)

    assert _default_opset(canonical) == PINNED_OPSET
    onnx.checker.check_model(canonical)
    (expected,) = _run(model, {"x": x})
    (actual,) = _run(canonical, {"x": x})
    assert actual.shape == (2, 5)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_constant_subgraph_is_folded():
    canonical = canonicalize(_const_model())

    ops = [node.op_type for node in canonical.graph.node]
    assert "Add" not in ops
    assert "Constant" not in ops
    assert "Mul" in ops
    x = np.array([[1, 1, 1], [-1, 2, 0]], np.float32)
    (z,) = _run(canonical, {"x": x})
    np.testing.assert_allclose(z, np.maximum(x * np.array([11, 22, 33], np.float32), 0))


def test_dead_nodes_are_removed():
    canonical = canonicalize(_const_model())

    assert "Neg" not in [node.op_type for node in canonical.graph.node]
    produced = {out for node in canonical.graph.node for out in node.output}
    assert "unused" not in produced


def test_shapes_are_inferred():
    model = _const_model()
    assert not model.graph.value_info

    canonical = canonicalize(model)

    shapes = {
        info.name: [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]
        for info in canonical.graph.value_info
    }
    assert shapes["y"] == ["N", 3]  # the Mul between input and output


def test_convnet_intermediates_get_shapes():
    canonical = canonicalize(_convnet(opset=8))

    shapes = {
        info.name: [d.dim_value for d in info.type.tensor_type.shape.dim]
        for info in canonical.graph.value_info
    }
    assert shapes["conv"] == [2, 4, 8, 8]
    assert shapes["pool"] == [2, 4, 4, 4]


@pytest.mark.parametrize(
    "model",
    [_convnet(opset=8), _convnet(opset=PINNED_OPSET), _const_model(opset=PINNED_OPSET)],
    ids=["convnet-opset8", "convnet-pinned", "constants-pinned"],
)
def test_input_model_is_not_mutated(model):
    before = model.SerializeToString(deterministic=True)

    canonical = canonicalize(model)

    assert canonical is not model
    assert model.SerializeToString(deterministic=True) == before


def test_a_newer_opset_is_kept_not_converted_down():
    graph = helper.make_graph(
        [helper.make_node("RotaryEmbedding", ["x", "cos", "sin"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 8]),
         helper.make_tensor_value_info("cos", TensorProto.FLOAT, [1, 4, 4]),
         helper.make_tensor_value_info("sin", TensorProto.FLOAT, [1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    canonical = canonicalize(model)
    assert _default_opset(canonical) == 23
    assert [n.op_type for n in canonical.graph.node] == ["RotaryEmbedding"]


def test_no_default_domain_opset_is_refused():
    model = _const_model()
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("com.example", 1))

    with pytest.raises(CanonicalizeError) as info:
        canonicalize(model)
    assert "default ONNX domain" in info.value.message
    assert info.value.fix.strip()


def _function_model() -> onnx.ModelProto:
    """y = local::NegRelu(x), a model-local function with body Neg(Relu(a))."""
    body = [helper.make_node("Relu", ["a"], ["t"]), helper.make_node("Neg", ["t"], ["b"])]
    function = helper.make_function(
        "local", "NegRelu", ["a"], ["b"], body, [helper.make_opsetid("", PINNED_OPSET)]
    )
    graph = helper.make_graph(
        [helper.make_node("NegRelu", ["x"], ["y"], domain="local")],
        "calls_a_function",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    opsets = [helper.make_opsetid("", PINNED_OPSET), helper.make_opsetid("local", 1)]
    return helper.make_model(graph, opset_imports=opsets, functions=[function])


def test_functions_are_kept_unless_inlining_is_asked():
    canonical = canonicalize(_function_model())

    assert [(n.domain, n.op_type) for n in canonical.graph.node] == [("local", "NegRelu")]
    assert [f.name for f in canonical.functions] == ["NegRelu"]


def test_inline_functions():
    model = _function_model()
    x = np.array([-1, 0, 2], np.float32)

    canonical = canonicalize(model, inline_functions=True)

    assert [(n.domain, n.op_type) for n in canonical.graph.node] == [("", "Relu"), ("", "Neg")]
    assert not canonical.functions
    assert {entry.domain for entry in canonical.opset_import} == {""}
    np.testing.assert_allclose(_run(canonical, {"x": x})[0], -np.maximum(x, 0))


@pytest.mark.parametrize(("opset", "expected"), [(13, PINNED_OPSET), (21, 21)])
def test_older_opsets_are_brought_up_to_the_pinned_one(opset, expected):
    canonical = canonicalize(_const_model(opset=opset))

    assert _default_opset(canonical) == expected


def test_unconvertible_model_is_refused():
    model = _const_model(opset=8)
    model.graph.node[-1].op_type = "NoSuchOp"

    with pytest.raises(CanonicalizeError) as info:
        canonicalize(model)
    assert f"opset 8 up to opset {PINNED_OPSET}" in info.value.message
    assert info.value.fix.strip()
