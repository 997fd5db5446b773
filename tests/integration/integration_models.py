"""Models built by hand for the integration tests, and the fp32 tolerance they use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# fp32 end to end through a whole model: roundoff of a few hundred accumulations.
ATOL, RTOL = 1e-4, 1e-3


def legacy_cnn(path: Path) -> Path:
    """An opset-8 CNN built by hand, as old model zoos ship them (LRN, Dropout, Sum...)."""
    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["c1", "s", "b1", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("LRN", ["r"], ["l"], size=3),
        helper.make_node("MaxPool", ["l"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Sum", ["p", "p"], ["s2"]),
        helper.make_node("GlobalAveragePool", ["s2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Dropout", ["f"], ["d"], ratio=0.5),
        helper.make_node("Gemm", ["d", "wf", "bf"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"]),
    ]
    inits = [weight("w1", 8, 3, 3, 3), weight("b1", 8), weight("m", 8), weight("wf", 10, 8),
             weight("bf", 10), numpy_helper.from_array(np.ones(8, np.float32), "s"),
             numpy_helper.from_array(np.full(8, 0.5, np.float32), "v")]  # fmt: skip
    graph = helper.make_graph(
        nodes, "legacy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)], ir_version=4)
    onnx.save(model, path)
    return path


def assert_matches_torch_and_onnxruntime(artifact: Any, name: str, onnx_path: Path) -> None:
    """Run a MODELS entry's artifact on seeded input; fp32 agreement with torch and ORT."""
    import torch

    from xpuport.benchmarks.models import MODELS
    from xpuport.compare import onnxruntime_session
    from xpuport.ir.export import load_factory

    entry = MODELS[name]
    x = np.random.default_rng(1).standard_normal(entry.inputs["x"]).astype(np.float32)
    (ours,) = artifact.run({"x": x}).values()
    with torch.no_grad():
        expected_torch = load_factory(entry.factory)(torch.from_numpy(x)).numpy()
    (expected_ort,) = onnxruntime_session(onnx_path).run(None, {"x": x})
    np.testing.assert_allclose(ours, expected_torch, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(ours, expected_ort, atol=ATOL, rtol=RTOL)
