"""Small ONNX graphs for the npusim tests."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper, numpy_helper

DTYPES = {"float32": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16,
          "bfloat16": onnx.TensorProto.BFLOAT16, "float64": onnx.TensorProto.DOUBLE}


def one_node(op, inputs, output, dtype="float16", constants=(), **attributes):
    """A model of one `op` node: inputs as {name: shape} (graph inputs), constants as arrays."""
    elem = DTYPES[dtype]
    graph = helper.make_graph(
        [helper.make_node(op, [*inputs, *(name for name, _ in constants)], ["y"], name="n",
                          **attributes)],
        "g", [helper.make_tensor_value_info(n, elem, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", elem, output)],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in constants])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    return onnx.shape_inference.infer_shapes(model)


def node_of(model):
    return next(iter(ir.from_proto(model).graph))
