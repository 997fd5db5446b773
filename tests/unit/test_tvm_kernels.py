"""lowering/tvm_kernels.py and backends/cpu_conv_schedule.py: small convolutions computed by
TVM's direct NHWC schedule, with every core where no library pool runs beside it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import te, topi

import xpuport
from xpuport.backends.base import CompileOptions
from xpuport.backends.cpu import CpuBackend
from xpuport.backends.cpu_conv_schedule import DirectConv
from xpuport.backends.cpu_gemm_schedule import DirectGemm
from xpuport.lowering.channels_last import channels_last_pass
from xpuport.lowering.library import op_calls
from xpuport.lowering.to_relax import to_relax
from xpuport.lowering.tvm_kernels import (
    TVM_CONV_MACS,
    TVM_GEMM_MAX_K,
    conv_macs,
    convs_stay_in_tvm,
    gemms_stay_in_tvm,
    hwio_weights_pass,
)


def _conv_net(path, shape=(1, 3, 20, 20), channels=16, kernel=3, stride=1, group=1,
              gemm: int = 0) -> str:
    """conv (bias) -> ReLU -> conv -> + residual -> ReLU -> global mean [-> Gemm of
    `gemm` columns]: a CNN's epilogues, NCHW as ONNX has it."""
    rng = np.random.default_rng(0)
    n, c = shape[:2]
    pad = kernel // 2
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[pad] * 4,
                              strides=[stride] * 2, group=group),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[pad] * 4),
             helper.make_node("Add", ["c2", "r1"], ["s"]),
             helper.make_node("Relu", ["s"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
             helper.make_node("Flatten", ["p"], ["y" if not gemm else "f"])]
    weights = {"w1": (channels, c // group, kernel, kernel), "b1": (channels,),
               "w2": (channels, channels, kernel, kernel)}
    if gemm:
        nodes.append(helper.make_node("Gemm", ["f", "g"], ["y"]))
        weights["g"] = (channels, gemm)
    graph = helper.make_graph(
        nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, gemm or channels])],
        [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.2, k)
         for k, s in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def _nhwc(path: str) -> Any:
    return channels_last_pass()(to_relax(onnx.load(path)))


def _run_both(path: str, artifact: Any, shape) -> None:
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(artifact.run({"x": x})["y"], want, rtol=1e-5, atol=1e-5)


def test_a_conv_counts_its_multiply_adds_in_any_weight_layout(tmp_path):
    module = _nhwc(_conv_net(tmp_path / "m.onnx", shape=(2, 3, 20, 20), stride=2))
    macs = sorted(conv_macs(call) for call in op_calls(module)
                  if call.op.name == "relax.nn.conv2d")
    assert macs == [2 * 10 * 10 * 16 * 3 * 9, 2 * 10 * 10 * 16 * 16 * 9]
    hwio = hwio_weights_pass()(module)
    assert sorted(conv_macs(call) for call in op_calls(hwio)
                  if call.op.name == "relax.nn.conv2d") == macs


def test_small_ungrouped_nhwc_convs_stay_in_tvm_and_others_do_not(tmp_path):
    assert convs_stay_in_tvm(_nhwc(_conv_net(tmp_path / "s.onnx")))
    # NCHW (as ONNX has it): the direct schedule reads NHWC only
    assert not convs_stay_in_tvm(to_relax(onnx.load(str(tmp_path / "s.onnx"))))
    grouped = _conv_net(tmp_path / "g.onnx", shape=(1, 4, 20, 20), group=2)
    assert not convs_stay_in_tvm(_nhwc(grouped))
    side = int(np.sqrt(TVM_CONV_MACS / (16 * 16 * 9))) + 2  # the second conv over the limit
    assert not convs_stay_in_tvm(_nhwc(_conv_net(tmp_path / "l.onnx", shape=(1, 3, side, side))))


def test_hwio_weights_are_constants_transposed_at_compile_time(tmp_path):
    module = hwio_weights_pass()(_nhwc(_conv_net(tmp_path / "m.onnx")))
    script = module.script()
    assert script.count('kernel_layout="HWIO"') == 2 and "OHWI" not in script
    assert "axes=[1, 2, 3, 0]" not in script  # the weights' transposes ran here, on constants


def _conv_kernel(tmp_path) -> Any:
    """A fused conv kernel with its epilogue (bias, ReLU), as dlight sees it."""
    path = _conv_net(tmp_path / "m.onnx")
    backend = CpuBackend()
    profile = xpuport.api.resolve_profile(backend, None)
    fused = backend.fused_kernels(to_relax(onnx.load(path)), profile, CompileOptions())
    kernels = [f for gv, f in fused.functions.items() if "conv2d" in gv.name_hint
               and "add" in gv.name_hint and isinstance(f, tvm.tirx.PrimFunc)]
    return max(kernels, key=lambda f: len(f.script())), backend.target(profile)


def test_the_direct_schedule_keeps_accumulators_and_applies_the_epilogue_on_store(tmp_path):
    kernel, target = _conv_kernel(tmp_path)
    with target:
        scheduled = DirectConv().apply(kernel, target, False)
    assert scheduled is not None
    text = scheduled.mod["main"].script()
    assert 'scope="local"' in text  # the accumulators
    assert "T.vectorized(T.int64(16))" in text and "T.unroll(T.int64(4))" in text
    assert "T.parallel" not in text  # 20x20x16 outputs: too few for a second thread
    blocks = [b for b in scheduled.get_child_blocks(scheduled.get_sblock("root"))]
    assert len(blocks) == 3  # the conv's init and update, and the store that applies the rest


@pytest.mark.parametrize(("kernel_layout", "dtype", "scheduled"), [
    ("HWIO", "float32", True), ("OHWI", "float32", False), ("HWIO", "float64", False)])
def test_the_direct_schedule_takes_hwio_float32_weights_only(kernel_layout, dtype, scheduled):
    """OHWI weights would be gathered one lane at a time; float64 keeps the fallback."""
    shape = {"HWIO": (3, 3, 8, 16), "OHWI": (16, 3, 3, 8)}[kernel_layout]
    data = te.placeholder((1, 12, 12, 8), dtype, name="x")
    weight = te.placeholder(shape, dtype, name="w")
    conv = topi.nn.conv(data, weight, 1, 1, 1, 1, "NHWC", kernel_layout)
    func = te.create_prim_func([data, weight, conv])
    target = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3"})
    assert (DirectConv().apply(func, target, False) is not None) == scheduled


@pytest.mark.parametrize(("shape", "channels", "kernel", "stride"), [
    ((1, 3, 22, 22), 16, 3, 2),  # an image's 3 channels, halved: 11 columns, 1 at a time
    ((2, 8, 12, 12), 10, 3, 1),  # 10 output channels: vectors of 10
    ((1, 16, 15, 15), 32, 1, 1),  # 1x1, 15 columns: 5 at a time
    ((1, 4, 24, 24), 24, 5, 1),  # 24 channels in vectors of 8; 24x24x24 rows in parallel
])
def test_small_cnns_run_their_convolutions_in_tvm_and_match_onnxruntime(
        tmp_path, shape, channels, kernel, stride):
    path = _conv_net(tmp_path / "m.onnx", shape=shape, channels=channels, kernel=kernel,
                     stride=stride)
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False)

    assert not any("conv" in name for name in artifact.manifest["library_calls"])
    assert artifact.manifest["host_thread_pools"] == []
    _run_both(path, artifact, shape)


def test_a_model_with_a_thread_pool_says_so_and_tvm_keeps_its_own_count(
        tmp_path, gemms_on_library):
    """A GEMM OpenBLAS threads (65536 x 4 multiply-adds or more) starts its pool. Under
    ONEDNN_GEMM_MACS (8.5M), so numpy's on any host: an AVX-512 one sends larger ones to
    oneDNN (backends/cpu.onednn_gemms_pay)."""
    from xpuport.backends import cpu as cpu_module

    path = _linear_net(tmp_path / "m.onnx", (512,), (1040, 16, 0), gelu=False)
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False)
    assert artifact.manifest["host_thread_pools"] == ["numpy"]
    assert not cpu_module.starts_no_thread_pool(artifact.path)
    manifest = json.loads((artifact.path / "manifest.json").read_text())
    assert manifest["library_calls"] == {"xpuport.cpu.numpy.matmul": 2}


def test_large_convolutions_go_to_the_library_with_its_pool(tmp_path, convs_on_library):
    path = _conv_net(tmp_path / "m.onnx")
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False)

    assert any("conv2d_epilogue_nhwc" in name for name in artifact.manifest["library_calls"])
    assert artifact.manifest["host_thread_pools"] == ["torch"]
    _run_both(path, artifact, (1, 3, 20, 20))


def test_a_direct_conv_matches_the_reference_evaluator_with_nan_and_inf(tmp_path):
    """The epilogue applied on store keeps ReLU's nan (lowering/relu_nan.py)."""
    path = _conv_net(tmp_path / "m.onnx", shape=(1, 3, 8, 8), channels=8)
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False)
    x = np.zeros((1, 3, 8, 8), np.float32)
    x[0, 0, 3, 3] = np.nan
    got = artifact.run({"x": x})["y"]
    assert np.isnan(got).all()  # the nan reaches every channel through the mean


def _linear_net(path, rows_shape=(128, 1), features=(64, 96, 32), gelu: bool = True) -> str:
    """x -> MatMul + bias [-> GELU] -> MatMul -> + x: a transformer block's MLP, as torch
    exports it (weights [in, out], sequence-first rows)."""
    rng = np.random.default_rng(0)
    d_in, hidden, _ = features
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["hb"])]
    nodes.append(helper.make_node("Gelu", ["hb"], ["g"]) if gelu
                 else helper.make_node("Relu", ["hb"], ["g"]))
    nodes += [helper.make_node("MatMul", ["g", "w2"], ["o"]),
              helper.make_node("Add", ["o", "x"], ["y"])]
    weights = {"w1": (d_in, hidden), "b1": (hidden,), "w2": (hidden, d_in)}
    shape = [*rows_shape, d_in]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.2, k)
         for k, s in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    return str(path)


@pytest.mark.parametrize(("rows_shape", "features"), [
    ((128, 1), (64, 96, 0)),  # 128 rows in steps of 6, the last one partial
    ((16, 8), (32, 1024, 0)),  # rows [16, 8]: steps of 4, aligned with the 8; 1024 columns
    ((2, 50), (64, 96, 0)),  # two 50-row matrices, each in steps of 6, the last one partial
    ((3,), (20, 10, 0)),  # fewer rows than a step, 10 and 20 columns: vectors of 10 and 4
])
@pytest.mark.parametrize("gelu", [True, False])
def test_gemms_run_in_tvm_and_match_onnxruntime(tmp_path, rows_shape, features, gelu):
    """GELU's steps read the bias add three times: computed on the stored tile; ReLU and
    the residual add inline into the store."""
    path = _linear_net(tmp_path / "m.onnx", rows_shape, features, gelu)
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False)

    assert artifact.manifest["library_calls"] == {}
    assert artifact.manifest["host_thread_pools"] == []
    shape = (*rows_shape, features[0])
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(artifact.run({"x": x})["y"], want, rtol=2e-5, atol=2e-5)


def _runtime_b_net(path, depth: int) -> str:
    """x @ w with w an input: a B computed at run time, packed per call."""
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
              for name, shape in (("x", [8, depth]), ("w", [depth, 32]))]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 32])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    return str(path)


def test_a_long_reduction_over_a_runtime_b_keeps_the_gemms_on_the_library(tmp_path):
    path = _runtime_b_net(tmp_path / "m.onnx", TVM_GEMM_MAX_K + 16)
    assert not gemms_stay_in_tvm(to_relax(onnx.load(path)))
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False)
    assert artifact.manifest["library_calls"] == {"xpuport.cpu.numpy.matmul": 1}
    assert gemms_stay_in_tvm(to_relax(onnx.load(_runtime_b_net(tmp_path / "s.onnx", 64))))


def test_a_long_reduction_over_constant_weights_stays_in_tvm_packed_at_compile_time(tmp_path):
    """The weights (and the transposed ones of a Gemm with transB) are constants, packed into
    column blocks once, whatever K; the result matches onnxruntime's."""
    path = _linear_net(tmp_path / "m.onnx", (8,), (TVM_GEMM_MAX_K + 16, 32, 0), gelu=False)
    assert gemms_stay_in_tvm(to_relax(onnx.load(path)))
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False)
    assert artifact.manifest["library_calls"] == {}
    x = np.random.default_rng(1).standard_normal((8, TVM_GEMM_MAX_K + 16)).astype(np.float32)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(artifact.run({"x": x})["y"], want, rtol=2e-5, atol=2e-5)


def _gemm_kernel(rows: int, depth: int, columns: int, batched: bool, dtype: str = "float32"):
    batch = (4,) if batched else ()
    a = te.placeholder((*batch, rows, depth), dtype, name="a")
    b = te.placeholder((*batch, depth, columns) if batched else (depth, columns), dtype, name="b")
    out = topi.matmul(a, b) if not batched else topi.nn.batch_matmul(a, b, transpose_b=False)
    return te.create_prim_func([a, b, out])


@pytest.mark.parametrize(("batched", "dtype", "scheduled"), [
    (False, "float32", True), (True, "float32", True), (False, "float64", False)])
def test_the_gemm_schedule_packs_b_and_keeps_accumulators(batched, dtype, scheduled):
    target = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3"})
    sch = DirectGemm().apply(_gemm_kernel(192, 64, 128, batched, dtype), target, False)
    assert (sch is not None) == scheduled
    if sch is not None:
        text = sch.mod["main"].script()
        assert text.count('scope="local"') == 2  # B's packed column block, the accumulators
        assert "T.unroll(6)" in text and "T.vectorized(16)" in text  # TE's int32 loops
        assert "T.parallel" in text


@pytest.mark.parametrize(("rows", "columns", "vector"), [
    (192, 128, 64), (192, 96, 32), (192, 40, 8),
    (192, 64, 64),  # too few outputs for a second thread: one block
    (1024, 64, 32)])  # in parallel: two blocks, one a thread
def test_avx512_gemms_step_over_four_registers_of_columns(rows, columns, vector):
    """TVM gives every x86 target 16 lanes: two AVX2 registers, one AVX-512 one, so an
    AVX-512 step takes 64 columns (24 accumulators of its 32 registers), fewer where the
    columns do not split into 64 or a parallel GEMM would have one block."""
    target = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v4"})
    text = DirectGemm().apply(_gemm_kernel(rows, 64, columns, False), target, False).mod[
        "main"].script()
    assert "T.unroll(6)" in text and f"T.vectorized({vector})" in text


def test_avx512_convolutions_keep_sixteen_pixels_of_accumulators():
    data = te.placeholder((1, 16, 32, 8), "float32", name="x")
    weight = te.placeholder((3, 3, 8, 16), "float32", name="w")
    func = te.create_prim_func([data, weight,
                                topi.nn.conv(data, weight, 1, 1, 1, 1, "NHWC", "HWIO")])
    pixels = {}
    for level in ("x86-64-v3", "x86-64-v4"):
        target = tvm.target.Target({"kind": "llvm", "mcpu": level})
        text = DirectConv().apply(func, target, False).mod["main"].script()
        pixels[level] = [n for n in (16, 4) if f"T.unroll({n})" in text]
    assert pixels == {"x86-64-v3": [4], "x86-64-v4": [16]}


def test_a_constant_b_is_packed_by_a_block_relax_splits_off():
    """B marked layout-free (a constant at the call) is packed into [N / 16, K, 16] by a
    preprocessing block, and the GEMM reads it there: one local buffer left, the
    accumulators."""
    target = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3"})
    kernel = _gemm_kernel(192, 64, 128, False).with_attr("layout_free_buffers", [1])
    sch = DirectGemm().apply(kernel, target, False)
    text = sch.mod["main"].script()
    assert '{"meta_schedule.layout_rewrite_preproc": True}' in text
    assert "T.sblock_alloc_buffer((8, 64, 16))" in text and text.count('scope="local"') == 1
    batched = DirectGemm().apply(
        _gemm_kernel(192, 64, 128, True).with_attr("layout_free_buffers", [1]), target, False)
    assert "layout_rewrite_preproc" not in batched.mod["main"].script()  # one B per matrix


def test_columns_that_split_into_no_vectors_are_left_to_the_next_rule():
    target = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3"})
    assert DirectGemm().apply(_gemm_kernel(12, 8, 1001, False), target, False) is None
    assert DirectGemm().apply(_gemm_kernel(12, 8, 10, False), target, False) is not None


def _shared_b_kernel(batch: int, rows: int):
    a = te.placeholder((batch, rows, 64), "float32", name="a")
    b = te.placeholder((64, 128), "float32", name="b")
    k = te.reduce_axis((0, 64), name="k")
    out = te.compute((batch, rows, 128), lambda n, i, j: te.sum(a[n, i, k] * b[k, j], axis=k))
    return te.create_prim_func([a, b, out])


@pytest.mark.parametrize(("rows", "folded", "step"), [
    (128, False, 6),  # 128 rows: steps of 6 within each matrix, not 4 across the fold
    (8, True, 4),  # rows [.., 8]: folded, in steps of 4 aligned with the 8
    (12, True, 6)])
def test_a_batch_sharing_b_is_folded_only_where_the_row_steps_align(rows, folded, step):
    target = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64-v3"})
    text = DirectGemm().apply(_shared_b_kernel(2, rows), target, False).mod["main"].script()
    assert f"T.unroll({step})" in text
    assert ("n_i_fused" in text) == folded
    assert (f"for n, i_0 in T.grid(2, {-(-rows // step)})" in text) != folded
    assert text.count('scope="local"') == 2  # B packed once per column block for the batch
