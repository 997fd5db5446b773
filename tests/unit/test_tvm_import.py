"""backends/tvm_import.py: what TVM's ONNX importer cannot take is declined with the reason."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from xpuport.backends.tvm_import import importable_ops, importer_support


def _node(op, inputs, outputs=(("y", TensorProto.FLOAT, None),), initializers=(), opset=20,
          **attributes):
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node(op, [n for n, *_ in inputs] + [i.name for i in initializers],
                          [n for n, *_ in outputs], **attributes)],
        "g", [value(n, t, s) for n, t, s in inputs], [value(n, t, s) for n, t, s in outputs],
        list(initializers))
    model = onnx.shape_inference.infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    return next(iter(ir.from_proto(model).graph))


def test_an_op_without_a_converter_is_declined():
    support = importer_support(_node("Det", [("x", TensorProto.FLOAT, [2, 2])]))
    assert not support.supported and "no converter for Det" in support.reason
    assert "Det" not in importable_ops() and "Relu" in importable_ops()


@pytest.mark.parametrize(("node", "phrase"), [
    (_node("Attention", [("q", TensorProto.FLOAT, [1, 2, 4, 8]),
                         ("k", TensorProto.FLOAT, [1, 2, 4, 8]),
                         ("v", TensorProto.FLOAT, [1, 2, 4, 8])], opset=23), "com.microsoft"),
    (_node("LayerNormalization", [("x", TensorProto.FLOAT, [2, 3, 4])],
           initializers=[numpy_helper.from_array(np.ones((3, 4), np.float32), "s")], axis=1),
     "last axis only"),
    (_node("LayerNormalization", [("x", TensorProto.BFLOAT16, [2, 4])],
           outputs=[("y", TensorProto.BFLOAT16, None)],
           initializers=[numpy_helper.from_array(np.ones(4, np.float32), "s")]),
     "float32 and float16 only"),
    (_node("Elu", [("x", TensorProto.FLOAT16, [4])], [("y", TensorProto.FLOAT16, None)]),
     "float32"),
    (_node("ReduceSum", [("x", TensorProto.FLOAT, [3, 0])],
           initializers=[numpy_helper.from_array(np.array([1], np.int64), "axes")]),
     "empty axis uninitialized"),
])
def test_converters_measured_wrong_are_declined(node, phrase):
    support = importer_support(node)
    assert not support.supported and phrase in support.reason


def test_an_input_the_importer_needs_constant_must_not_be_a_graph_input():
    as_input = _node("ReduceSum", [("x", TensorProto.FLOAT, [3, 4]),
                                   ("axes", TensorProto.INT64, [1])])
    support = importer_support(as_input)
    assert not support.supported and "'axes' input as a constant" in support.reason
    constant = _node("ReduceSum", [("x", TensorProto.FLOAT, [3, 4])],
                     initializers=[numpy_helper.from_array(np.array([1], np.int64), "axes")])
    assert importer_support(constant).supported


def test_the_last_axis_layer_norm_is_taken():
    node = _node("LayerNormalization", [("x", TensorProto.FLOAT, [2, 3, 4])],
                 initializers=[numpy_helper.from_array(np.ones(4, np.float32), "s")], axis=-1)
    assert importer_support(node).supported
