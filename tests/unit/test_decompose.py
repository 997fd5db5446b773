"""lowering/decompose.py: declined nodes become their ONNX function body (or an xpuport rule)
only where every node of the replacement runs on the backend, computing the same values."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from xpuport.backends.base import Support
from xpuport.backends.cpu import CpuBackend
from xpuport.backends.cuda import CudaBackend
from xpuport.hw_profiles import load_profile
from xpuport.ir.canonicalize import canonicalize
from xpuport.lowering.decompose import decompose

CPU, PROFILE = CpuBackend(), load_profile("generic/x86-64")
RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, initializers=(), opset=20):
    value = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "g", [value(n, t, s) for n, t, s in inputs],
                              [value(n, t, s) for n, t, s in outputs], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _same_as_onnxruntime(original, decomposed, feeds):
    expected = ort.InferenceSession(original.SerializeToString()).run(None, feeds)
    actual = ort.InferenceSession(decomposed.SerializeToString()).run(None, feeds)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-6)


def test_a_function_body_replaces_the_node_under_its_name():
    model = _model([helper.make_node("Celu", ["x"], ["y"], name="c", alpha=2.0)],
                   [("x", TensorProto.FLOAT, [3, 4])], [("y", TensorProto.FLOAT, [3, 4])])
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [(d.node, d.op, d.via, len(d.members)) for d in done] == [
        ("c", "Celu", "onnx-function", 3)]
    assert all(n.name.startswith("c/") for n in decomposed.graph.node)
    _same_as_onnxruntime(model, decomposed, {"x": RNG.standard_normal((3, 4), np.float32)})


def test_context_dependent_bodies_expand_again_where_needed():
    # SoftmaxCrossEntropyLoss's body holds a NegativeLogLikelihoodLoss, itself a body
    model = _model([helper.make_node("SoftmaxCrossEntropyLoss", ["s", "t"], ["loss"],
                                     name="sce", reduction="mean")],
                   [("s", TensorProto.FLOAT, [4, 5]), ("t", TensorProto.INT64, [4])],
                   [("loss", TensorProto.FLOAT, [])], opset=13)
    decomposed, done = decompose(model, CPU, PROFILE)
    assert [d.op for d in done] == ["SoftmaxCrossEntropyLoss"]
    ops = {n.op_type for n in decomposed.graph.node}
    assert "NegativeLogLikelihoodLoss" not in ops and "LogSoftmax" in ops
    feeds = {"s": RNG.standard_normal((4, 5), np.float32),
             "t": np.array([0, 4, 2, 1], np.int64)}
    _same_as_onnxruntime(model, decomposed, feeds)


def test_an_expansion_that_changes_the_output_type_is_refused():
    # ONNX's Celu body turns a 0-d input into shape [1]
    model = _model([helper.make_node("Celu", ["x"], ["y"], name="c")],
                   [("x", TensorProto.FLOAT, [])], [("y", TensorProto.FLOAT, [])])
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert done == [] and [n.op_type for n in decomposed.graph.node] == ["Celu"]


class _DeclinesDiv(CpuBackend):
    def supports(self, node, profile):
        return Support.no("no Div here") if node.op_type == "Div" else super().supports(
            node, profile)


def test_an_expansion_with_a_node_the_backend_declines_is_not_taken():
    model = _model([helper.make_node("Celu", ["x"], ["y"], name="c")],
                   [("x", TensorProto.FLOAT, [3])], [("y", TensorProto.FLOAT, [3])])
    decomposed, done = decompose(canonicalize(model), _DeclinesDiv(), PROFILE)
    assert done == [] and [n.op_type for n in decomposed.graph.node] == ["Celu"]


def _one(op, x_shape, extra=(), opset=20, **attributes):
    inputs = [("x", TensorProto.FLOAT, list(x_shape))]
    names = ["x"]
    initializers = []
    for name, value, as_input in extra:
        names.append(name)
        if as_input:
            inputs.append((name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
        else:
            initializers.append(numpy_helper.from_array(value, name))
    return _model([helper.make_node(op, names, ["y"], name="n", **attributes)], inputs,
                  [("y", TensorProto.FLOAT, None)], initializers, opset)


@pytest.mark.parametrize(("p", "axis"), [(1, 1), (2, 0), (2, -1)])
def test_the_lp_normalization_rule(p, axis):
    model = _one("LpNormalization", (3, 4, 5), p=p, axis=axis)
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [d.via for d in done] == ["xpuport-rule"]
    _same_as_onnxruntime(model, decomposed, {"x": RNG.standard_normal((3, 4, 5), np.float32)})


@pytest.mark.parametrize(("shape", "axis", "as_input", "exclusive", "reverse"), [
    ((6,), 0, True, 0, 0), ((6,), 0, True, 1, 1), ((3, 4), 1, False, 1, 0),
    ((3, 4), -2, False, 0, 1)])
def test_the_cum_prod_rule_multiplies_in_order(shape, axis, as_input, exclusive, reverse):
    axis_value = np.array(axis, np.int64)
    model = _one("CumProd", shape, [("axis", axis_value, as_input)], opset=26,
                 exclusive=exclusive, reverse=reverse)
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [d.via for d in done] == ["xpuport-rule"]
    x = RNG.uniform(0.5, 1.5, shape).astype(np.float32)
    feeds = {"x": x, **({"axis": axis_value} if as_input else {})}
    result = ort.InferenceSession(decomposed.SerializeToString()).run(None, feeds)[0]
    moved = np.moveaxis(x, axis, -1)
    moved = np.flip(moved, -1) if reverse else moved
    ones = np.ones_like(moved[..., :1])
    product = np.cumprod(np.concatenate([ones, moved[..., :-1]], -1) if exclusive else moved, -1)
    expected = np.moveaxis(np.flip(product, -1) if reverse else product, -1, axis)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_cum_prod_with_a_computed_axis_and_a_choice_of_axes_is_left_alone():
    model = _one("CumProd", (3, 4), [("axis", np.array(1, np.int64), True)], opset=26)
    _, done = decompose(canonicalize(model), CPU, PROFILE)
    assert done == []


@pytest.mark.parametrize(("batch_axis", "time_axis", "shape"), [(0, 1, (3, 5, 2)),
                                                                 (1, 0, (5, 3))])
def test_the_reverse_sequence_rule(batch_axis, time_axis, shape):
    lens = np.array([5, 1, 3], np.int64)
    model = _one("ReverseSequence", shape, [("lens", lens, True)], batch_axis=batch_axis,
                 time_axis=time_axis)
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [d.via for d in done] == ["xpuport-rule"]
    _same_as_onnxruntime(model, decomposed,
                         {"x": RNG.standard_normal(shape).astype(np.float32), "lens": lens})


def test_a_model_without_declined_nodes_is_returned_as_it_is():
    model = canonicalize(_model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                                [("x", TensorProto.FLOAT, [2])],
                                [("y", TensorProto.FLOAT, [2])]))
    decomposed, done = decompose(model, CPU, PROFILE)
    assert done == [] and [n.op_type for n in decomposed.graph.node] == ["Relu"]
    assert onnx.checker.check_model(decomposed) is None


def _exactly_as_onnxruntime(original, decomposed, feeds):
    expected = ort.InferenceSession(original.SerializeToString()).run(None, feeds)
    actual = ort.InferenceSession(decomposed.SerializeToString()).run(None, feeds)
    for a, e in zip(actual, expected, strict=True):
        assert a.dtype == e.dtype
        np.testing.assert_array_equal(a, e)


def _by_reference(original, decomposed, feeds):
    """Both graphs' single output from ONNX's reference evaluator (onnxruntime lacks kernels
    for some of these dtypes)."""
    (expected,) = ReferenceEvaluator(original).run(None, feeds)
    (actual,) = ReferenceEvaluator(decomposed).run(None, feeds)
    return expected, actual


@pytest.mark.parametrize(("positive", "negative"), [(1, 0), (0, 1), (0, 0)])
def test_the_is_inf_rule_tells_the_signs_apart(positive, negative):
    model = _model([helper.make_node("IsInf", ["x"], ["y"], name="n",
                                     detect_positive=positive, detect_negative=negative)],
                   [("x", TensorProto.FLOAT, [5])], [("y", TensorProto.BOOL, [5])])
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [d.via for d in done] == ["xpuport-rule"]
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -1.0], np.float32)
    _exactly_as_onnxruntime(model, decomposed, {"x": x})


@pytest.mark.parametrize(("dtype", "values"), [
    (TensorProto.FLOAT, np.array([0.5, 2.0], np.float32)),
    (TensorProto.INT32, np.array([-1, 7], np.int32))])
def test_the_one_hot_rule_keeps_the_dtype_of_its_values(dtype, values):
    nodes = [helper.make_node("OneHot", ["labels", "depth", "values"], ["y"], name="n", axis=1)]
    model = _model(nodes, [("labels", TensorProto.INT64, [4])], [("y", dtype, [4, 5])],
                   [numpy_helper.from_array(np.array(5, np.int64), "depth"),
                    numpy_helper.from_array(values, "values")])
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [d.via for d in done] == ["xpuport-rule"]
    # onnxruntime has no OneHot kernel for these dtypes: ONNX's reference evaluator has
    feeds = {"labels": np.array([0, 4, -1, 2], np.int64)}
    expected, actual = _by_reference(model, decomposed, feeds)
    assert actual.dtype == values.dtype
    np.testing.assert_array_equal(actual, expected)


def test_the_int32_reduce_mean_rule_returns_int32():
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="n", keepdims=0)]
    model = _model(nodes, [("x", TensorProto.INT32, [3, 4])], [("y", TensorProto.INT32, [3])],
                   [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [d.via for d in done] == ["xpuport-rule"]
    _exactly_as_onnxruntime(model, decomposed,
                            {"x": RNG.integers(-50, 50, (3, 4)).astype(np.int32)})


def test_the_half_batch_norm_rule_computes_in_float32_and_returns_float16():
    channels = 3
    stats = [numpy_helper.from_array(RNG.uniform(0.5, 1.5, channels).astype(np.float16), name)
             for name in ("scale", "bias", "mean", "var")]
    nodes = [helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"],
                              ["y"], name="n", epsilon=1e-3)]
    model = _model(nodes, [("x", TensorProto.FLOAT16, [2, channels, 4])],
                   [("y", TensorProto.FLOAT16, [2, channels, 4])], stats)
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [d.via for d in done] == ["xpuport-rule"]
    x = RNG.standard_normal((2, channels, 4)).astype(np.float16)
    result = ort.InferenceSession(decomposed.SerializeToString()).run(None, {"x": x})[0]
    scale, bias, mean, var = (numpy_helper.to_array(t).astype(np.float64)[:, None]
                              for t in stats)
    expected = (x.astype(np.float64) - mean) / np.sqrt(var + 1e-3) * scale + bias
    assert result.dtype == np.float16
    np.testing.assert_allclose(result, expected, rtol=2 ** -10, atol=2 ** -10)


@pytest.mark.parametrize("op", ["Sinh", "Cosh", "Round"])
def test_the_float32_rules_for_float16_ops_cuda_cannot_build(op):
    """Computed in float32 and rounded once to float16: at least as exact as in float16."""
    model = _model([helper.make_node(op, ["x"], ["y"], name="n")],
                   [("x", TensorProto.FLOAT16, [16])], [("y", TensorProto.FLOAT16, [16])])
    decomposed, done = decompose(canonicalize(model), CudaBackend(),
                                 load_profile("nvidia/h100"))
    assert [d.via for d in done] == ["xpuport-rule"]
    x = np.concatenate([np.arange(-2.5, 3.0, 0.5), RNG.uniform(-4, 4, 5)]).astype(np.float16)
    result = ort.InferenceSession(decomposed.SerializeToString()).run(None, {"x": x})[0]
    exact = getattr(np, op.lower() if op != "Round" else "round")(x.astype(np.float64))
    assert result.dtype == np.float16
    np.testing.assert_array_equal(result, exact.astype(np.float16))


@pytest.mark.parametrize(("op", "attributes", "out_type"), [
    ("IsNaN", {}, TensorProto.BOOL), ("IsInf", {}, TensorProto.BOOL),
    ("IsInf", {"detect_negative": 0}, TensorProto.BOOL),
    ("Cast", {"to": TensorProto.INT32}, TensorProto.INT32)])
def test_bfloat16_finiteness_tests_run_in_float32(op, attributes, out_type):
    model = _model([helper.make_node(op, ["x"], ["y"], name="n", **attributes)],
                   [("x", TensorProto.BFLOAT16, [6])], [("y", out_type, [6])])
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert done and done[0].via == "xpuport-rule"
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -2.5, 3.0], np.float32)
    if op == "Cast":
        x = x[3:].repeat(2)  # finite values: a cast of inf or nan to int32 is undefined
    feeds = {"x": x.astype(ml_dtypes.bfloat16)}
    expected, actual = _by_reference(model, decomposed, feeds)
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize(("op", "half", "extra", "attributes"), [
    ("PRelu", TensorProto.BFLOAT16, [("slope", np.float32(0.25))], {}),
    ("Clip", TensorProto.BFLOAT16, [("lo", np.float32(-0.5)), ("hi", np.float32(0.5))], {}),
    ("ArgMax", TensorProto.BFLOAT16, [], {"axis": 1}),
    ("LRN", TensorProto.FLOAT16, [], {"size": 3}),
    ("Selu", TensorProto.FLOAT16, [], {})])
def test_half_precision_nodes_tvm_cannot_build_are_decomposed(op, half, extra, attributes):
    half_np = ml_dtypes.bfloat16 if half == TensorProto.BFLOAT16 else np.float16
    initializers = [numpy_helper.from_array(np.array(v).astype(half_np), name)
                    for name, v in extra]
    out_type, out_shape = (TensorProto.INT64, [1, 3, 2]) if op == "ArgMax" else (half, [1, 3, 4, 2])
    node = helper.make_node(op, ["x", *[name for name, _ in extra]], ["y"], name="n",
                            **({"keepdims": 1} if op == "ArgMax" else {}), **attributes)
    model = _model([node], [("x", half, [1, 3, 4, 2])], [("y", out_type, out_shape)],
                   initializers)
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    # PRelu, Clip and Selu have ONNX function bodies, which come first and build in half
    assert [d.via for d in done] == [
        "onnx-function" if op in ("PRelu", "Clip", "Selu") else "xpuport-rule"]
    if done[0].via == "xpuport-rule":  # in float32: the node between casts
        assert sorted(n.op_type for n in decomposed.graph.node) == sorted(
            [op, "Cast", *(["Cast"] if out_type == half else [])])
    feeds = {"x": RNG.standard_normal((1, 3, 4, 2)).astype(half_np)}
    expected, actual = _by_reference(model, decomposed, feeds)
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64),
                               rtol=2 ** -7, atol=2 ** -7)


@pytest.mark.parametrize(("base_type", "exponent_type"), [
    (TensorProto.FLOAT, TensorProto.INT64), (TensorProto.INT32, TensorProto.INT32),
    (TensorProto.INT64, TensorProto.INT64)])
def test_the_pow_rule_for_integer_exponents_and_bases(base_type, exponent_type):
    nodes = [helper.make_node("Pow", ["x", "e"], ["y"], name="n")]
    model = _model(nodes, [("x", base_type, [4, 5]), ("e", exponent_type, [4, 5])],
                   [("y", base_type, [4, 5])])
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [d.via for d in done] == ["xpuport-rule"]
    base_np = helper.tensor_dtype_to_np_dtype(base_type)
    feeds = {"x": RNG.integers(-5, 6, (4, 5)).astype(base_np),
             "e": RNG.integers(0, 5, (4, 5)).astype(helper.tensor_dtype_to_np_dtype(
                 exponent_type))}
    _exactly_as_onnxruntime(model, decomposed, feeds)


def test_bool_equal_is_not_xor():
    model = _model([helper.make_node("Equal", ["a", "b"], ["y"], name="n")],
                   [("a", TensorProto.BOOL, [4]), ("b", TensorProto.BOOL, [4])],
                   [("y", TensorProto.BOOL, [4])])
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [d.via for d in done] == ["xpuport-rule"]
    _exactly_as_onnxruntime(model, decomposed, {"a": np.array([0, 0, 1, 1], bool),
                                                "b": np.array([0, 1, 0, 1], bool)})


def test_integer_prelu_takes_its_onnx_function_body():
    nodes = [helper.make_node("PRelu", ["x", "slope"], ["y"], name="n")]
    model = _model(nodes, [("x", TensorProto.INT32, [2, 3])], [("y", TensorProto.INT32, [2, 3])],
                   [numpy_helper.from_array(np.array([2, -1, 3], np.int32), "slope")])
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [d.via for d in done] == ["onnx-function"]
    feeds = {"x": np.array([[-3, 0, 4], [5, -2, -1]], np.int32)}
    expected, actual = _by_reference(model, decomposed, feeds)
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("op", ["Sinh", "Cosh"])
@pytest.mark.parametrize(("dtype", "ulp"), [(TensorProto.FLOAT, 2 ** -23),
                                            (TensorProto.FLOAT16, 2 ** -10)])
def test_the_hyperbolic_rule_on_cpu_rounds_float64_once(op, dtype, ulp):
    model = _model([helper.make_node(op, ["x"], ["y"], name="n")], [("x", dtype, [9])],
                   [("y", dtype, [9])])
    decomposed, done = decompose(canonicalize(model), CPU, PROFILE)
    assert [d.via for d in done] == ["xpuport-rule"]
    np_type = helper.tensor_dtype_to_np_dtype(dtype)
    x = np.array([0.0, 1e-6, -3e-5, 0.5, -1.0, 4.0, -9.0, np.inf, np.nan], np_type)
    (actual,) = ReferenceEvaluator(decomposed).run(None, {"x": x})
    exact = getattr(np, op.lower())(x.astype(np.float64))
    assert actual.dtype == np_type
    np.testing.assert_allclose(actual, exact.astype(np_type), rtol=ulp, atol=0)
