"""lowering/relu_nan.py: Relu keeps nan on every TVM backend, as ONNX's reference does."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import xpuport
from xpuport.backends.base import CompileOptions
from xpuport.backends.cuda import CudaBackend
from xpuport.backends.gpu import device_modules
from xpuport.hw_profiles import load_profile
from xpuport.lowering.pipeline import lower
from xpuport.lowering.to_relax import to_relax


def _relu_after_add(path) -> str:
    """Add then Relu: the relu is TVM's own kernel here, no library call takes it."""
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["doubled"]),
         helper.make_node("Relu", ["doubled"], ["y"])], "relu",
        [value("x", TensorProto.FLOAT, [2, 4])], [value("y", TensorProto.FLOAT, [2, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@pytest.mark.parametrize("library", [True, False])
def test_relu_keeps_nan_and_zeroes_negatives_on_cpu(tmp_path, library):
    artifact = xpuport.compile(_relu_after_add(tmp_path / "relu.onnx"), "cpu",
                               output_dir=tmp_path / "out", use_cache=False,
                               options=CompileOptions(library=library))
    x = np.array([[np.nan, -np.inf, -1.0, -0.0], [0.5, np.inf, 2.0, np.nan]], np.float32)
    (y,) = artifact.run({"x": x}).values()
    np.testing.assert_array_equal(y, np.where(np.isnan(x), x, np.maximum(2 * x, 0)))


def test_cuda_relu_is_a_compare_and_select(tmp_path):
    module = to_relax(onnx.load(_relu_after_add(tmp_path / "relu.onnx")))
    executable = lower(module, CudaBackend(), load_profile("nvidia/h100"), CompileOptions())
    (kernels,) = device_modules(executable, "cuda")
    source = kernels.inspect_source()
    assert "relu_keeping_nan" in source and "max(" not in source
