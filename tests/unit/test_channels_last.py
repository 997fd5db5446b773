"""lowering/channels_last.py: a model's convolutions move to NHWC together, or not at all."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import xpuport
from xpuport.lowering.channels_last import channels_last_pass
from xpuport.lowering.to_relax import to_relax

pytest.importorskip("torch")
SHAPE = [1, 4, 12, 12]


def _model(path, *, summed: bool = False, transposed: bool = False) -> str:
    """conv -> ReLU -> [Sum with itself] -> max pool [-> ConvTranspose, 2x, 8 channels]
    -> conv -> ReLU; NCHW, as ONNX has it."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"])]
    if summed:
        nodes.append(helper.make_node("Sum", ["r1", "r1"], ["n1"]))
    nodes.append(helper.make_node("MaxPool", ["n1" if summed else "r1"], ["p"],
                                  kernel_shape=[2, 2], strides=[2, 2]))
    if transposed:
        nodes.append(helper.make_node("ConvTranspose", ["p", "wt"], ["u"], strides=[2, 2]))
    nodes += [helper.make_node("Conv", ["u" if transposed else "p", "w2", "b2"], ["c2"],
                               pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c2"], ["y"])]
    weights = {"w1": (8, 4, 3, 3), "b1": (8,), "w2": (8, 8, 3, 3), "b2": (8,)}
    if transposed:
        weights["wt"] = (8, 8, 2, 2)
    side = 12 if transposed else 6
    graph = helper.make_graph(
        nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, side, side])],
        [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n)
         for n, s in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_the_layout_carries_between_convolutions(tmp_path):
    script = channels_last_pass()(to_relax(onnx.load(_model(tmp_path / "m.onnx")))).script()

    assert script.count('data_layout="NHWC"') == 2 and 'data_layout="NCHW"' not in script
    assert script.count("R.permute_dims") == 2  # the input in, the output out: nothing between


@pytest.mark.parametrize("kept_in_nchw", ["", "summed", "transposed"])
def test_the_convolutions_run_in_the_layout_the_model_took(tmp_path, kept_in_nchw,
                                                           convs_on_library):
    """TVM's ConvertLayout fails on its import of ONNX's Sum (a stack, then a sum over the
    new axis), and hands conv2d_transpose an NHWC input that TVM has no kernel for: those
    models stay NCHW, and their convs go to the NCHW kernel; all match onnxruntime."""
    path = _model(tmp_path / "m.onnx", summed=kept_in_nchw == "summed",
                  transposed=kept_in_nchw == "transposed")
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False)
    suffix = "" if kept_in_nchw else "_nhwc"
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    assert artifact.manifest["library_calls"] == {f"xpuport.cpu.torch.conv2d_epilogue{suffix}": 2}
    np.testing.assert_allclose(artifact.run({"x": x})["y"], want, rtol=1e-5, atol=1e-5)
