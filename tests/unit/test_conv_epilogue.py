"""lowering/conv_epilogue.py: a conv's bias, residual add and ReLU become one library call."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import xpuport
from xpuport.backends import host_kernels
from xpuport.lowering.channels_last import channels_last_pass
from xpuport.lowering.conv_epilogue import EPILOGUE_OP, conv_epilogue_pass
from xpuport.lowering.to_relax import to_relax

pytest.importorskip("torch")
EPILOGUE = next(lib for lib in host_kernels.host_libraries() if lib.op == EPILOGUE_OP)
SHAPE = [2, 8, 9, 11]


def _block(path, extra_output: bool = False, seed: int = 0) -> str:
    """relu(conv(x) + b + x): a residual block; `extra_output` also returns the conv + b."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2
    bias = rng.standard_normal(8).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "x"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, SHAPE))
    graph = helper.make_graph(
        nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)], outputs,
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def _fused(path) -> str:
    """The model's script after the CPU backend's layout and epilogue passes (its conv
    library takes NHWC)."""
    module = channels_last_pass()(to_relax(onnx.load(path)))
    return conv_epilogue_pass(EPILOGUE)(module).script()


def test_bias_residual_and_relu_become_one_call(tmp_path):
    script = _fused(_block(tmp_path / "b.onnx"))

    assert script.count(f'"{EPILOGUE.function}"') == 1
    assert "R.nn.conv2d" not in script and "R.nn.relu" not in script and "R.add" not in script


def test_an_intermediate_read_elsewhere_is_not_fused(tmp_path):
    script = _fused(_block(tmp_path / "b.onnx", extra_output=True))

    # conv + b is an output too: only it fuses; the residual add and ReLU stay with TVM
    assert script.count(f'"{EPILOGUE.function}"') == 1
    assert "R.nn.conv2d" not in script and "R.nn.relu" in script


@pytest.mark.parametrize("extra_output", [False, True])
def test_fused_block_matches_onnxruntime(tmp_path, extra_output, convs_on_library):
    path = _block(tmp_path / "b.onnx", extra_output)
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False)
    expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})

    assert artifact.manifest["library_calls"] == {EPILOGUE.function: 1}
    for got, want in zip(artifact.run({"x": x}).values(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_models_alike_but_for_their_weights_each_use_their_own(tmp_path):
    """The kernel packs each constant weight once for oneDNN and keeps it: two loaded models
    with weights of one shape must not share a packed weight."""
    paths = [_block(tmp_path / f"b{seed}.onnx", seed=seed) for seed in (0, 1)]
    artifacts = [xpuport.compile(p, "cpu", output_dir=tmp_path / f"a{k}", use_cache=False)
                 for k, p in enumerate(paths)]
    x = np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32)
    for _ in range(2):
        for path, artifact in zip(paths, artifacts, strict=True):
            want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
                None, {"x": x})[0]
            np.testing.assert_allclose(artifact.run({"x": x})["y"], want, rtol=1e-5, atol=1e-5)
