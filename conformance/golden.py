"""The float64 reference: each case's graph upcast and run on ONNX's reference evaluator.

The golden reads the very same input values as the backend (a float16 input becomes the
float64 number it represents); only ops whose meaning depends on the dtype (casts, integer,
bitwise and comparison ops) are evaluated natively, and integer tensors are never upcast.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.reference import ReferenceEvaluator

from xpuport.conformance.cases import Case

_LOW_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def golden(case: Case) -> list[np.ndarray]:
    """The reference outputs of `case`: float64 unless the case says native or given."""
    if case.golden == "given":
        assert case.expected is not None, f"{case.case_id}: golden 'given' without outputs"
        return list(case.expected)
    model = case.onnx_model()
    feeds = dict(case.feeds)
    if case.golden == "float64":
        model, feeds = upcast(model), upcast_feeds(feeds)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # inf and nan are the expected results of edge-value samples, not news
        warnings.simplefilter("ignore", RuntimeWarning)
        outputs = ReferenceEvaluator(model).run(None, feeds)
    return [np.asarray(output) for output in outputs]


def upcast(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose float tensors (values, initializers, attributes) are float64."""
    upcast_model = onnx.ModelProto()
    upcast_model.CopyFrom(model)
    graph = upcast_model.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type in _LOW_FLOATS:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    for index, init in enumerate(graph.initializer):
        graph.initializer[index].CopyFrom(_upcast_tensor(init))
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                attribute.t.CopyFrom(_upcast_tensor(attribute.t))
    return upcast_model


def _upcast_tensor(tensor: TensorProto) -> TensorProto:
    if tensor.data_type not in _LOW_FLOATS:
        return tensor
    array = numpy_helper.to_array(tensor).astype(np.float64)
    return numpy_helper.from_array(array, tensor.name)


def upcast_feeds(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: _upcast_array(value) for name, value in feeds.items()}


def _upcast_array(value: np.ndarray) -> np.ndarray:
    if value.dtype.kind == "f" or value.dtype.name == "bfloat16":
        return value.astype(np.float64)
    return value
