"""backends/cpu_schedules.py and cpu_fast_math.py: TVM's kernels scheduled and vectorizable."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper

import xpuport
from xpuport.backends.base import CompileOptions
from xpuport.backends.cpu import CpuBackend
from xpuport.backends.cpu_fast_math import fast_math
from xpuport.backends.cpu_schedules import (
    PARALLEL_MIN_ELEMENTS,
    TRANSPOSE_TILE,
    ColumnReduction,
    Guarded,
    Injective,
    RowReduction,
)
from xpuport.hw_profiles import load_profile
from xpuport.lowering.to_relax import to_relax

PROFILE = load_profile("generic/x86-64")


def _unary(path, op: str, shape, dtype=TensorProto.FLOAT) -> str:
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], op,
                              [helper.make_tensor_value_info("x", dtype, shape)],
                              [helper.make_tensor_value_info("y", dtype, shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    return str(path)


def _fused(path: str) -> Any:
    """The model's Relax module up to fused kernels, as tuning and the schedules see it."""
    return CpuBackend().fused_kernels(to_relax(onnx.load(path)), PROFILE, CompileOptions())


def _scheduled(path: str, *rules) -> str:
    """The scheduled TIR of the model's kernels under `rules`, as text."""
    from tvm.s_tir import dlight

    with CpuBackend().target(PROFILE):
        scheduled = dlight.ApplyDefaultSchedule(*rules)(_fused(path))
    return "\n".join(f.script() for f in scheduled.functions.values()
                     if isinstance(f, tvm.tirx.PrimFunc))


def _kernel(path: str) -> str:
    """The scheduled TIR of the model's one kernel, as text."""
    return _scheduled(path, Injective())


def test_a_large_elementwise_kernel_runs_parallel_and_vectorized(tmp_path):
    text = _kernel(_unary(tmp_path / "r.onnx", "Relu", [64, PARALLEL_MIN_ELEMENTS // 64]))
    assert "T.parallel" in text and "T.vectorized" in text


def test_a_small_elementwise_kernel_stays_serial(tmp_path):
    text = _kernel(_unary(tmp_path / "r.onnx", "Relu", [4, 64]))
    assert "T.parallel" not in text and "T.vectorized" in text


def test_a_rule_that_fails_declines_instead_of_breaking_the_build():
    class Broken(tvm.s_tir.dlight.ScheduleRule):
        def apply(self, func, target, tunable):
            raise AssertionError

    assert Guarded(Broken()).apply(None, None, False) is None


def test_fast_math_replaces_float32_erf_and_keeps_float16(tmp_path):
    for dtype, fast in ((TensorProto.FLOAT, True), (TensorProto.FLOAT16, False)):
        module = fast_math(to_relax(onnx.load(_unary(tmp_path / "e.onnx", "Erf", [8], dtype))))
        assert ("R.erf" not in module.script()) is fast


@pytest.mark.parametrize("op", ["Erf", "Gelu", "Tanh", "Exp", "Softmax"])
def test_fast_math_stays_within_float32_tolerance_and_keeps_special_values(tmp_path, op):
    path = _unary(tmp_path / "m.onnx", op, [2, 9])
    x = np.linspace(-6, 6, 18, dtype=np.float32).reshape(2, 9)
    x[0, :3] = [np.inf, -np.inf, np.nan] if op in ("Erf", "Tanh") else x[0, :3]
    fast = xpuport.compile(path, "cpu", output_dir=tmp_path / "fast", use_cache=False)
    exact = xpuport.compile(path, "cpu", output_dir=tmp_path / "exact", use_cache=False,
                            options=CompileOptions(fast_math=False))
    np.testing.assert_allclose(fast.run({"x": x})["y"], exact.run({"x": x})["y"],
                               rtol=2e-6, atol=2e-6)


def test_a_broadcast_operand_is_read_once_per_vector_not_per_lane(tmp_path):
    """conv bias (1, C, 1, 1) over (1, C, H, W): the vector runs along H*W, so the bias
    index comes from the parallel loop alone (no per-lane division by H*W)."""
    shape = [1, 16, 56, 56]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["y"])], "bias",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [helper.make_tensor("b", TensorProto.FLOAT, [1, 16, 1, 1], np.arange(16.0))])
    path = tmp_path / "bias.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    lines = _kernel(str(path)).splitlines()
    vector = next(line.split()[1] for line in lines if "T.vectorized" in line)
    channel = next(line for line in lines if "T.axis.spatial(T.int64(16)" in line)

    assert "T.parallel" in "\n".join(lines)
    assert vector not in channel


def _graph(path, nodes, inputs, output_shape, initializers=()) -> str:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                                         shape)
                                           for name, shape in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                             output_shape)],
                              list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    return str(path)


def test_a_layer_norm_sums_each_row_into_vector_partials(tmp_path):
    scale = helper.make_tensor("g", TensorProto.FLOAT, [256], np.ones(256))
    bias = helper.make_tensor("b", TensorProto.FLOAT, [256], np.zeros(256))
    path = _graph(tmp_path / "ln.onnx",
                  [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)],
                  [("x", [64, 256])], [64, 256], [scale, bias])
    text = _scheduled(path, RowReduction())

    assert "T.parallel(T.int64(64))" in text
    assert text.count("_rf_update") == 2  # the mean's sum and the variance's
    x = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32) * 3 + 1
    y = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False).run({"x": x})
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y["y"], expected, rtol=1e-5, atol=1e-5)


def test_a_mean_over_rows_sums_whole_rows_of_the_kept_axis_as_vectors(tmp_path):
    """NHWC's global pooling: the channels, contiguous, are the vector; H and W the loops."""
    path = _graph(tmp_path / "m.onnx",
                  [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)],
                  [("x", [4, 12, 12, 32])], [4, 1, 1, 32],
                  [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])])
    text = _scheduled(path, ColumnReduction())
    lines = text.splitlines()
    vector = next(k for k, line in enumerate(lines) if "T.vectorized" in line)

    assert "T.parallel(T.int64(4))" in text
    assert "T.grid(T.int64(12), T.int64(12)" in lines[vector - 1]  # the sums outside the vector
    x = np.random.default_rng(0).standard_normal((4, 12, 12, 32)).astype(np.float32)
    y = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False).run({"x": x})
    np.testing.assert_allclose(y["y"], x.mean(axis=(1, 2), keepdims=True), rtol=1e-5,
                               atol=1e-6)


def test_a_row_reduction_is_left_to_the_row_rule(tmp_path):
    path = _graph(tmp_path / "s.onnx", [helper.make_node("Softmax", ["x"], ["y"], axis=-1)],
                  [("x", [64, 256])], [64, 256])
    assert "T.vectorized" not in _scheduled(path, ColumnReduction())


def test_an_argmax_keeps_its_serial_first_index_reduction(tmp_path):
    """Partial results per lane would break ties toward a later index."""
    path = _graph(tmp_path / "am.onnx",
                  [helper.make_node("ArgMax", ["x"], ["i"], axis=1, keepdims=1),
                   helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)],
                  [("x", [64, 256])], [64, 1])
    assert "_rf" not in _scheduled(path, RowReduction(), Injective())


def test_a_transpose_is_copied_in_tiles_read_along_the_input(tmp_path):
    """(128, 8, 64) -> (8, 64, 128): each tile of 8 output columns reads 8 input rows."""
    path = _graph(tmp_path / "t.onnx", [helper.make_node("Transpose", ["x"], ["y"],
                                                         perm=[1, 2, 0])],
                  [("x", [128, 8, 64])], [8, 64, 128])
    text = _scheduled(path, Injective())
    lines = text.splitlines()
    vector = next(k for k, line in enumerate(lines) if f"T.vectorized(T.int64({TRANSPOSE_TILE}))"
                  in line)
    assert "in range(T.int64(64))" in lines[vector - 1]  # the input's contiguous axis, inside
    x = np.random.default_rng(0).standard_normal((128, 8, 64)).astype(np.float32)
    y = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False).run({"x": x})
    np.testing.assert_array_equal(y["y"], x.transpose(1, 2, 0))


def test_an_image_copied_to_nhwc_is_read_in_vectors_along_its_rows(tmp_path):
    """NCHW -> NHWC writes rows of 3 channels, too short for a vector: the copy reads each
    channel's row contiguously, a vector at a time, the 3 channels unrolled around it
    (an 8x3x224x224 image: 660 us with each 3-wide row a serial loop, 164 us so)."""
    path = _graph(tmp_path / "t.onnx", [helper.make_node("Transpose", ["x"], ["y"],
                                                         perm=[0, 2, 3, 1])],
                  [("x", [2, 3, 96, 96])], [2, 96, 96, 3])
    lines = _scheduled(path, Injective()).splitlines()
    vector = next(k for k, line in enumerate(lines) if "T.vectorized(" in line)

    assert "T.unroll(T.int64(3))" in lines[vector - 1]
    assert "T.parallel(T.int64(192))" in "\n".join(lines[:vector])  # images x rows
    x = np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)
    y = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False).run({"x": x})
    np.testing.assert_array_equal(y["y"], x.transpose(0, 2, 3, 1))


def test_a_run_too_short_to_vectorize_stays_a_loop_inside_the_parallel_one(tmp_path):
    """Rows of 3 that no input reads along another axis (the row moves whole): fused into
    the parallel loop, every element would compute its indices by division and modulo (a
    1x3x224x224 copy: 186 us so, 34 us with the row a loop of its own)."""
    path = _graph(tmp_path / "t.onnx", [helper.make_node("Transpose", ["x"], ["y"],
                                                         perm=[0, 2, 1, 3])],
                  [("x", [1, 96, 96, 3])], [1, 96, 96, 3])
    text = _scheduled(path, Injective())

    assert "T.parallel(T.int64(9216))" in text and "in range(T.int64(3))" in text
    x = np.random.default_rng(0).standard_normal((1, 96, 96, 3)).astype(np.float32)
    y = xpuport.compile(path, "cpu", output_dir=tmp_path / "a", use_cache=False).run({"x": x})
    np.testing.assert_array_equal(y["y"], x.transpose(0, 2, 1, 3))


def test_kernels_name_their_blocks_alike_whatever_the_model_names_its_values(tmp_path):
    """Tuning records find blocks by name, and a layer norm's blocks were named after its
    input: one model's records stored against another's kernel broke a shared database."""
    scripts = []
    for name in ("x", "lv7"):
        scale = helper.make_tensor("g", TensorProto.FLOAT, [64], np.ones(64))
        bias = helper.make_tensor("b", TensorProto.FLOAT, [64], np.zeros(64))
        path = _graph(tmp_path / f"{name}.onnx",
                      [helper.make_node("LayerNormalization", [name, "g", "b"], ["y"], axis=-1)],
                      [(name, [8, 64])], [8, 64], [scale, bias])
        kernel = next(f for f in _fused(path).functions.values()
                      if isinstance(f, tvm.tirx.PrimFunc))
        scripts.append([line for line in kernel.script().splitlines() if "T.sblock(" in line])
    assert scripts[0] == scripts[1]
    assert 'T.sblock("b0")' in scripts[0][1]


def test_a_kernel_written_as_loops_without_blocks_still_builds(tmp_path):
    """topi writes CumSum (and TopK, ScatterElements) as loops in one block named after the
    op, not "root": naming blocks looked for "root" and failed 39 cases of the ops suite."""
    axis = helper.make_tensor("axis", TensorProto.INT64, [], [1])
    path = _graph(tmp_path / "cumsum.onnx", [helper.make_node("CumSum", ["x", "axis"], ["y"])],
                  [("x", [4, 16])], [4, 16], [axis])
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    artifact = xpuport.compile(path, "cpu", None, tmp_path / "out", tuning=False)
    np.testing.assert_allclose(artifact.run({"x": x})["y"], np.cumsum(x, axis=1), rtol=1e-5,
                               atol=1e-5)
