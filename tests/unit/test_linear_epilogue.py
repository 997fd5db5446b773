"""lowering/linear_epilogue.py: a constant-weight GEMM with its bias and activation or residual
becomes one oneDNN linear call, only where that computes nothing twice and pays off."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import xpuport
from xpuport.backends import host_kernels
from xpuport.backends.cpu import host_dispatch, onednn_gemms_pay
from xpuport.hw_profiles import load_profile
from xpuport.lowering.linear_epilogue import LINEAR_OP, linear_pass
from xpuport.lowering.to_relax import to_relax

pytest.importorskip("torch")
LINEAR = next(lib for lib in host_kernels.host_libraries(torch_gemms=True) if lib.op == LINEAR_OP)
ROWS, K, N = 128, 256, 512  # 16.8M multiply-adds: large enough for oneDNN (ONEDNN_GEMM_MACS)


def _layer(path, tail: str, rows: int = ROWS, bias_shape: tuple[int, ...] = (N,),
           extra_output: bool = False) -> str:
    """x @ W + b, then `tail`: "Gelu", "Relu", "residual" (+ r), or "" (nothing)."""
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array((rng.standard_normal((K, N)) * 0.05).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(bias_shape).astype(np.float32), "b")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["s"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows, K])]
    if tail == "residual":
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, rows, N]))
        nodes.append(helper.make_node("Add", ["r", "s"], ["y"]))
    elif tail:
        nodes.append(helper.make_node(tail, ["s"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", ["s"], ["y"]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, rows, N])]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, rows, N]))
    graph = helper.make_graph(nodes, "linear", inputs, outputs, initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    return str(path)


def _fused(path: str) -> str:
    return str(linear_pass(LINEAR)(to_relax(onnx.load(path))).script())


@pytest.mark.parametrize("tail", ["Gelu", "Relu", "residual", ""])
def test_gemm_bias_and_its_tail_become_one_call(tmp_path, tail):
    script = _fused(_layer(tmp_path / "l.onnx", tail))

    assert script.count(f'"{LINEAR.function}"') == 1
    for op in ("R.matmul", "R.add", "R.nn.gelu", "R.nn.relu"):
        assert op not in script


def test_an_intermediate_read_elsewhere_is_not_fused(tmp_path):
    script = _fused(_layer(tmp_path / "l.onnx", "Gelu", extra_output=True))

    # x @ W + b is an output too: it fuses, and GELU stays with TVM
    assert script.count(f'"{LINEAR.function}"') == 1 and "R.nn.gelu" in script


def test_a_bias_that_is_not_per_column_stays_with_tvm(tmp_path):
    script = _fused(_layer(tmp_path / "l.onnx", "Relu", bias_shape=(ROWS, N)))

    # the bias is per element: the GEMM alone is the library's, the add and ReLU TVM's
    assert script.count(f'"{LINEAR.function}"') == 1 and "R.add" in script


def test_a_small_gemm_is_left_to_the_matmul_libraries(tmp_path):
    script = _fused(_layer(tmp_path / "l.onnx", "Gelu", rows=1))

    assert LINEAR.function not in script and "R.matmul" in script


@pytest.mark.parametrize("tail", ["Gelu", "Relu", "residual"])
def test_fused_layer_matches_onnxruntime(tmp_path, tail):
    """Built straight from the fused module, so oneDNN's kernel is checked on every host
    (compile sends GEMMs to it only on hosts where it pays: test_large_gemms_follow_the_host)."""
    path = _layer(tmp_path / "l.onnx", tail)
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((1, ROWS, K)).astype(np.float32)}
    if tail == "residual":
        feeds["r"] = rng.standard_normal((1, ROWS, N)).astype(np.float32)
    module = linear_pass(LINEAR)(to_relax(onnx.load(path)))
    assert module.script().count(f'"{LINEAR.function}"') == 1
    host_kernels.register()
    vm = relax.VirtualMachine(tvm.compile(module, tvm.target.Target({"kind": "llvm"})), tvm.cpu())
    got = vm["main"](*(tvm.runtime.tensor(value) for value in feeds.values()))  # input order
    expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)

    np.testing.assert_allclose(got.numpy(), expected[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("profile", "library"), [
    ("generic/x86-64-v4", LINEAR.function), ("generic/x86-64-v3", "xpuport.cpu.numpy.matmul")])
def test_large_gemms_follow_the_host(tmp_path, profile, library, gemms_on_library):
    """oneDNN's linear layers pay on AVX-512 hosts; on AVX2 ones OpenBLAS is faster."""
    module = to_relax(onnx.load(_layer(tmp_path / "l.onnx", "Gelu")))
    dispatch = host_dispatch(onednn_gemms_pay(load_profile(profile)))

    assert f'"{library}"' in dispatch(module).script()


def test_a_model_of_small_gemms_keeps_numpy(tmp_path, gemms_on_library):
    """One pool per model: a model whose GEMMs are all below ONEDNN_GEMM_MACS stays on
    numpy's BLAS, so no call pays oneDNN's dispatch for it."""
    path = _layer(tmp_path / "l.onnx", "Gelu", rows=8)
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False)

    assert artifact.manifest["library_calls"] == {"xpuport.cpu.numpy.matmul": 1}
