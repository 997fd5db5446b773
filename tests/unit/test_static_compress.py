"""ir/static_compress.py: Compress with a constant condition becomes a static Gather."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from xpuport.ir.canonicalize import canonicalize


def _compress(shape: list[int], condition: list[bool], axis: int | None,
              condition_is_input: bool = False) -> onnx.ModelProto:
    attributes = {} if axis is None else {"axis": axis}
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    if condition_is_input:
        inputs.append(helper.make_tensor_value_info("c", TensorProto.BOOL, [len(condition)]))
    graph = helper.make_graph(
        [helper.make_node("Compress", ["x", "c"], ["y"], **attributes)], "compress", inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(condition), "c")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize(("shape", "condition", "axis", "kept_shape"), [
    ([4, 3], [True, False, True, True], 0, [3, 3]),
    ([2, 5], [False, True, True], 1, [2, 2]),  # shorter than the axis: the rest is dropped
    ([2, 3], [True, False, False, True, True, False], None, [3]),  # no axis: flattened
])
def test_a_constant_condition_becomes_a_gather_with_a_static_shape(shape, condition, axis,
                                                                   kept_shape):
    model = _compress(shape, condition, axis)
    canonical = canonicalize(model)
    assert "Compress" not in [node.op_type for node in canonical.graph.node]
    output_dims = canonical.graph.output[0].type.tensor_type.shape.dim
    assert [dim.dim_value for dim in output_dims] == kept_shape
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(_run(canonical, x), _run(model, x))


def test_a_condition_given_at_run_time_stays_a_compress():
    canonical = canonicalize(_compress([4, 3], [True, False, True, True], 0,
                                       condition_is_input=True))
    assert [node.op_type for node in canonical.graph.node] == ["Compress"]
