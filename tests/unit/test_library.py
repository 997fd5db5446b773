"""lowering/library.py and backends/host_kernels.py: what is dispatched, and that it is right."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import xpuport
from xpuport.backends import host_kernels
from xpuport.backends.base import CompileOptions
from xpuport.errors import DeviceUnavailableError
from xpuport.lowering.library import Library, dispatch_pass, library_calls, missing_functions
from xpuport.lowering.to_relax import to_relax


def _conv_model(path, dtype=TensorProto.FLOAT, group=1, **attrs) -> str:
    rng = np.random.default_rng(0)
    numpy_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    weight = rng.standard_normal((8, 8 // group, 3, 3)).astype(numpy_dtype)
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=group, **attrs)
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", dtype, [2, 8, 11, 13])],
        [helper.make_tensor_value_info("y", dtype, None)], [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(onnx.shape_inference.infer_shapes(model), path)
    return str(path)


def _matmul_model(path, dtype=TensorProto.FLOAT) -> str:
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    graph = helper.make_graph(
        [node], "mm", [helper.make_tensor_value_info("a", dtype, [3, 4, 5]),
                       helper.make_tensor_value_info("b", dtype, [5, 6])],
        [helper.make_tensor_value_info("y", dtype, [3, 4, 6])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def _calls(path: str, libraries: list[Library]) -> str:
    return dispatch_pass(libraries)(to_relax(onnx.load(path))).script()


def test_matmul_becomes_a_call_of_the_library_kernel(tmp_path):
    script = _calls(_matmul_model(tmp_path / "m.onnx"), host_kernels.host_libraries())
    assert 'R.call_dps_packed("xpuport.cpu.numpy.matmul"' in script
    assert "R.matmul" not in script


def test_a_dtype_the_library_lacks_stays_with_tvm(tmp_path):
    script = _calls(_matmul_model(tmp_path / "m.onnx", TensorProto.FLOAT16),
                    host_kernels.host_libraries())
    assert "R.matmul" in script and "call_dps_packed" not in script


def test_conv2d_passes_its_attributes(tmp_path):
    path = _conv_model(tmp_path / "c.onnx", strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2])
    script = _calls(path, [Library("cpu", "numpy", "conv2d", frozenset({"float32"}))])
    assert 'R.call_dps_packed("xpuport.cpu.numpy.conv2d", (x, ' in script
    assert "2, 1, 1, 0, 2, 1, 1, 2, 1)" in script  # strides, pads (t, l, b, r), dilation, groups


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("attrs", [
    {"pads": [1, 1, 1, 1]},
    {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2]},
    {"group": 4, "pads": [0, 1, 0, 1]},
])
def test_conv2d_kernels_match_onnxruntime(tmp_path, monkeypatch, request, library, attrs,
                                          convs_on_library):
    if library == "torch" and not host_kernels.torch_installed():
        pytest.skip("torch is not installed")
    monkeypatch.setattr(host_kernels, "torch_installed", lambda: library == "torch")
    # register() runs once per process: let it run again now, and after the patch is gone
    host_kernels.register.cache_clear()
    request.addfinalizer(host_kernels.register.cache_clear)
    path = _conv_model(tmp_path / "c.onnx", **attrs)
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "out", use_cache=False)
    conv = next(lib for lib in host_kernels.host_libraries() if lib.op == "conv2d")
    assert (conv.name, conv.layout) == ((library, "NHWC") if library == "torch"
                                        else (library, "NCHW"))
    assert artifact.manifest["library_calls"] == {conv.function: 1}
    x = np.random.default_rng(1).standard_normal((2, 8, 11, 13)).astype(np.float32)
    import onnxruntime as ort

    expected = ort.InferenceSession(path).run(None, {"x": x})[0]
    np.testing.assert_allclose(artifact.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-4)


def test_matmul_kernel_matches_and_no_library_means_tvm(tmp_path, gemms_on_library):
    path = _matmul_model(tmp_path / "m.onnx")
    feeds = {"a": np.ones((3, 4, 5), np.float32),
             "b": np.arange(30, dtype=np.float32).reshape(5, 6)}
    with_library = xpuport.compile(path, "cpu", output_dir=tmp_path / "on", use_cache=False)
    without = xpuport.compile(path, "cpu", output_dir=tmp_path / "off", use_cache=False,
                              options=CompileOptions(library=False))
    assert with_library.manifest["library_calls"] == {"xpuport.cpu.numpy.matmul": 1}
    assert without.manifest["library_calls"] == {}
    placement = json.loads((tmp_path / "on" / "placement.json").read_text())
    assert placement["library_calls"] == {"xpuport.cpu.numpy.matmul": 1}
    expected = feeds["a"] @ feeds["b"]
    np.testing.assert_array_equal(with_library.run(feeds)["y"], expected)
    np.testing.assert_array_equal(without.run(feeds)["y"], expected)


def test_library_calls_counts_call_sites(tmp_path):
    import tvm

    module = dispatch_pass(host_kernels.host_libraries())(
        to_relax(onnx.load(_matmul_model(tmp_path / "m.onnx"))))
    assert library_calls(tvm.compile(module, target=tvm.target.Target({"kind": "llvm"}))) == {
        "xpuport.cpu.numpy.matmul": 1}


def test_missing_functions_names_unregistered_kernels():
    host_kernels.register()
    assert missing_functions(["xpuport.cpu.numpy.matmul", "xpuport.cpu.acme.gemm"]) == [
        "xpuport.cpu.acme.gemm"]


def test_an_artifact_whose_kernels_are_missing_is_refused(tmp_path):
    out = tmp_path / "out"
    xpuport.compile(_matmul_model(tmp_path / "m.onnx"), "cpu", output_dir=out, use_cache=False)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["library_calls"] = {"xpuport.cpu.acme.matmul": 1}
    (out / "manifest.json").write_text(json.dumps(manifest))
    feeds = {"a": np.ones((3, 4, 5), np.float32), "b": np.ones((5, 6), np.float32)}
    with pytest.raises(DeviceUnavailableError, match=r"xpuport\.cpu\.acme\.matmul"):
        xpuport.load(out).run(feeds)


def _normalized_model(path, softmax_axis: int) -> str:
    """x @ W (large enough for torch's pool), layer norm over the last axis, then softmax."""
    rng = np.random.default_rng(0)
    initializers = [numpy_helper.from_array(rng.standard_normal((256, 512)).astype(np.float32)
                                            * 0.05, "w"),
                    numpy_helper.from_array(rng.standard_normal(512).astype(np.float32), "g"),
                    numpy_helper.from_array(rng.standard_normal(512).astype(np.float32), "b")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("LayerNormalization", ["m", "g", "b"], ["n"], axis=-1,
                              epsilon=1e-5),
             helper.make_node("Softmax", ["n"], ["y"], axis=softmax_axis)]
    graph = helper.make_graph(
        nodes, "norms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 128, 512])], initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@pytest.mark.parametrize(("softmax_axis", "softmax_calls"), [(-1, 1), (1, 0)])
def test_normalizations_join_torchs_pool_over_the_last_axis_only(tmp_path, softmax_axis,
                                                                 softmax_calls,
                                                                 gemms_on_library):
    """Built from the dispatched module with torch's pool chosen (as for large GEMMs TVM
    does not take, on an AVX-512 host, or any host for a model with convolutions), so it
    runs the same on every host."""
    pytest.importorskip("torch")
    import onnxruntime as ort

    from xpuport.backends.cpu import host_dispatch

    path = _normalized_model(tmp_path / "n.onnx", softmax_axis)
    module = host_dispatch(True)(to_relax(onnx.load(path)))
    script = module.script()
    x = np.random.default_rng(1).standard_normal((1, 128, 256)).astype(np.float32)
    host_kernels.register()
    vm = relax.VirtualMachine(tvm.compile(module, tvm.target.Target({"kind": "llvm"})),
                              tvm.cpu())

    assert script.count('"xpuport.cpu.torch.layer_norm"') == 1
    assert script.count('"xpuport.cpu.torch.softmax"') == softmax_calls
    expected = ort.InferenceSession(path).run(None, {"x": x})[0]
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), expected,
                               rtol=1e-5, atol=1e-6)
