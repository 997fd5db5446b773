"""The simulated units compute with exactly the numerics the profile states."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from npusim_graphs import one_node

import xpuport

RNG = np.random.default_rng(0)


def run(model, tmp_path, feeds, profile=None):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    artifact = xpuport.compile(path, "npusim", profile, tmp_path / "a", use_cache=False,
                               strict=True)
    return next(iter(artifact.run(feeds).values()))


def test_the_matrix_unit_accumulates_in_float32(tmp_path):
    # 4096 products of 1: a float16 accumulator stalls at 2048 (2048 + 1 rounds to 2048)
    ones = np.ones((1, 4096), np.float16)
    model = one_node("MatMul", {"a": [1, 4096], "b": [4096, 1]}, [1, 1])
    result = run(model, tmp_path, {"a": ones, "b": ones.T.copy()})
    assert result.dtype == np.float16 and result[0, 0] == 4096


def test_the_matrix_unit_rounds_once_to_the_output_dtype(tmp_path):
    a = RNG.standard_normal((8, 64)).astype(np.float16)
    b = RNG.standard_normal((64, 16)).astype(np.float16)
    result = run(one_node("MatMul", {"a": [8, 64], "b": [64, 16]}, [8, 16]), tmp_path,
                 {"a": a, "b": b})
    exact = a.astype(np.float64) @ b.astype(np.float64)
    # float32 accumulation of float16 products then one rounding: at most half an ULP from
    # the exact value, plus the (far smaller) float32 summation error
    ulp = np.spacing(np.abs(exact).astype(np.float16)).astype(np.float64)
    assert np.all(np.abs(result.astype(np.float64) - exact) <= 0.5 * ulp + 1e-5)


def test_bfloat16_matmul_with_broadcast_batch(tmp_path):
    bf16 = ml_dtypes.bfloat16
    a = RNG.standard_normal((2, 1, 4, 16)).astype(bf16)
    b = RNG.standard_normal((3, 16, 5)).astype(bf16)
    model = one_node("MatMul", {"a": [2, 1, 4, 16], "b": [3, 16, 5]}, [2, 3, 4, 5], "bfloat16")
    result = run(model, tmp_path, {"a": a, "b": b})
    exact = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert result.dtype == bf16 and result.shape == (2, 3, 4, 5)
    assert np.allclose(result.astype(np.float64), exact, rtol=2**-8, atol=2**-8)


def test_the_vector_unit_computes_in_float32_and_rounds_once(tmp_path):
    x = RNG.uniform(-4, 4, 256).astype(np.float16)
    result = run(one_node("Exp", {"x": [256]}, [256]), tmp_path, {"x": x})
    once = np.exp(x.astype(np.float32)).astype(np.float16)
    # float32 exp may differ from numpy's by an ULP of float32, which rarely moves a float16
    assert np.mean(result == once) > 0.99
    assert np.all(np.abs(result.astype(np.float64) - once) <= np.spacing(once))


def test_relu_keeps_nan_as_onnx_defines(tmp_path):
    x = np.array([np.nan, -1.0, 0.0, 2.0], np.float16)
    result = run(one_node("Relu", {"x": [4]}, [4]), tmp_path, {"x": x})
    assert np.isnan(result[0]) and list(result[1:]) == [0.0, 0.0, 2.0]


@pytest.mark.parametrize("profile", ["huawei/ascend-910b", "huawei/ascend-910"])
def test_softmax_rows_sum_to_one(tmp_path, profile):
    x = RNG.standard_normal((3, 40)).astype(np.float16)
    result = run(one_node("Softmax", {"x": [3, 40]}, [3, 40], axis=-1), tmp_path, {"x": x},
                 profile)
    assert np.allclose(result.astype(np.float64).sum(-1), 1.0, atol=40 * 2**-11)


def test_group_normalization_reaches_the_npu_through_its_onnx_function_body(tmp_path):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    value = helper.make_tensor_value_info
    scale = numpy_helper.from_array(RNG.standard_normal(6).astype(np.float32), "scale")
    bias = numpy_helper.from_array(RNG.standard_normal(6).astype(np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["n"], num_groups=3),
         helper.make_node("Relu", ["n"], ["y"])], "g",
        [value("x", TensorProto.FLOAT, [2, 6, 4])], [value("y", TensorProto.FLOAT, [2, 6, 4])],
        [scale, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    x = RNG.standard_normal((2, 6, 4)).astype(np.float32)
    result = run(model, tmp_path, {"x": x})  # strict: every node on the NPU
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)
