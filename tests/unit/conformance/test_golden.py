"""conformance/golden.py: the float64 reference, and onnxruntime checked against it."""

from __future__ import annotations

import ctypes

import ml_dtypes
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from xpuport.conformance.cases import Case, spec_cases
from xpuport.conformance.evaluate import compare_outputs
from xpuport.conformance.golden import golden, upcast, upcast_feeds
from xpuport.conformance.ops import all_specs
from xpuport.conformance.spec import OpSpec, Sample
from xpuport.conformance.tolerance import policy

DOUBLE = TensorProto.DOUBLE


def _mixed_model() -> onnx.ModelProto:
    """A model holding every kind of tensor upcast touches, in low floats and int64."""
    consts = [
        numpy_helper.from_array(np.array([0.5, 1.5], np.float16), "w16"),
        numpy_helper.from_array(np.array([0.25, 2.0], ml_dtypes.bfloat16), "wbf"),
        numpy_helper.from_array(np.array([1.0, 3.0], np.float32), "w32"),
        numpy_helper.from_array(np.array([4, 5], np.int64), "idx"),
    ]
    attr_tensor = numpy_helper.from_array(np.array([0.125, -1.0], np.float16), "c")
    int_attr_tensor = numpy_helper.from_array(np.array([7, 8], np.int64), "ci")
    nodes = [
        helper.make_node("Constant", [], ["c"], value=attr_tensor),
        helper.make_node("Constant", [], ["ci"], value=int_attr_tensor),
        helper.make_node("Add", ["x16", "w16"], ["s16"]),
        helper.make_node("Add", ["xbf", "wbf"], ["sbf"]),
        helper.make_node("Add", ["x32", "w32"], ["s32"]),
        helper.make_node("Add", ["i", "idx"], ["si"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mixed",
        [
            helper.make_tensor_value_info("x16", TensorProto.FLOAT16, [2]),
            helper.make_tensor_value_info("xbf", TensorProto.BFLOAT16, [2]),
            helper.make_tensor_value_info("x32", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("i", TensorProto.INT64, [2]),
        ],
        [
            helper.make_tensor_value_info("s16", TensorProto.FLOAT16, [2]),
            helper.make_tensor_value_info("sbf", TensorProto.BFLOAT16, [2]),
            helper.make_tensor_value_info("s32", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("si", TensorProto.INT64, [2]),
        ],
        consts,
        value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT16, [2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _elem_types(values) -> dict[str, int]:
    return {value.name: value.type.tensor_type.elem_type for value in values}


def test_upcast_turns_float_values_into_double_and_leaves_int64():
    model = upcast(_mixed_model())

    assert _elem_types(model.graph.input) == {"x16": DOUBLE, "xbf": DOUBLE, "x32": DOUBLE,
                                              "i": TensorProto.INT64}
    assert _elem_types(model.graph.output) == {"s16": DOUBLE, "sbf": DOUBLE, "s32": DOUBLE,
                                               "si": TensorProto.INT64}
    assert _elem_types(model.graph.value_info) == {"c": DOUBLE}


def test_upcast_turns_initializers_into_double_with_the_same_values():
    model = upcast(_mixed_model())
    inits = {init.name: init for init in model.graph.initializer}

    assert [init.name for init in model.graph.initializer] == ["w16", "wbf", "w32", "idx"]
    for name in ("w16", "wbf", "w32"):
        assert inits[name].data_type == DOUBLE
    assert inits["idx"].data_type == TensorProto.INT64
    np.testing.assert_array_equal(numpy_helper.to_array(inits["w16"]), [0.5, 1.5])
    np.testing.assert_array_equal(numpy_helper.to_array(inits["wbf"]), [0.25, 2.0])
    np.testing.assert_array_equal(numpy_helper.to_array(inits["idx"]), [4, 5])


def test_upcast_turns_tensor_attributes_into_double():
    model = upcast(_mixed_model())
    values = {node.output[0]: helper.get_attribute_value(node.attribute[0])
              for node in model.graph.node if node.op_type == "Constant"}

    assert values["c"].data_type == DOUBLE
    np.testing.assert_array_equal(numpy_helper.to_array(values["c"]), [0.125, -1.0])
    assert values["ci"].data_type == TensorProto.INT64


def test_upcast_leaves_the_original_model_alone():
    model = _mixed_model()
    before = model.SerializeToString()

    upcast(model)

    assert model.SerializeToString() == before


def test_upcast_feeds_converts_floats_only():
    feeds = upcast_feeds({
        "h": np.array([0.1], np.float16),
        "b": np.array([0.1], ml_dtypes.bfloat16),
        "f": np.array([0.1], np.float32),
        "i": np.array([3], np.int64),
        "q": np.array([True]),
    })

    assert {name: value.dtype.name for name, value in feeds.items()} == {
        "h": "float64", "b": "float64", "f": "float64", "i": "int64", "q": "bool"}
    assert feeds["h"][0] == float(np.float16(0.1))  # the very number the float16 represents
    assert feeds["b"][0] == float(ml_dtypes.bfloat16(0.1))


def _one_case(spec: OpSpec, dtype: str) -> Case:
    (case,) = spec_cases(spec, [dtype])
    return case


def test_float16_add_golden_is_the_float64_sum_of_the_float16_values():
    a = np.array([1.0, 1.0, 0.1, 2048.0], np.float16)
    b = np.array([2.0**-11, 3 * 2.0**-12, 0.2, 1.0], np.float16)
    spec = OpSpec("Add", lambda v: [Sample("pair", (a, b))], ("float16",))

    (result,) = golden(_one_case(spec, "float16"))

    exact = a.astype(np.float64) + b.astype(np.float64)
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, exact)
    # a float16 sum would have rounded: the golden is not that
    assert not np.array_equal(result, (a + b).astype(np.float64))


def test_bfloat16_golden_reads_the_bfloat16_values():
    x = np.array([1.0, 0.1, -3.3], ml_dtypes.bfloat16)
    spec = OpSpec("Sqrt", lambda v: [Sample("t", (np.abs(x),))], ("bfloat16",))

    (result,) = golden(_one_case(spec, "bfloat16"))

    assert result.dtype == np.float64
    np.testing.assert_allclose(result, np.sqrt(np.abs(x).astype(np.float64)), rtol=1e-15)


def test_native_golden_evaluates_in_the_case_dtype():
    x = np.array([[1.0, 0.1, -2.7], [3.14159, 65504.0, 1e-8]], np.float32)
    half = OpSpec("Cast", lambda v: [Sample("to_half", (x,), {"to": TensorProto.FLOAT16})],
                  ("float32",), kind="exact", golden="native")
    to_int = OpSpec("Cast", lambda v: [Sample("to_int", (x,), {"to": TensorProto.INT32})],
                    ("float32",), kind="exact", golden="native")

    (as_half,) = golden(_one_case(half, "float32"))
    (as_int,) = golden(_one_case(to_int, "float32"))

    assert as_half.dtype == np.float16
    np.testing.assert_array_equal(as_half, x.astype(np.float16))
    assert as_int.dtype == np.int32
    np.testing.assert_array_equal(as_int, x.astype(np.int32))


def test_native_golden_does_not_upcast_a_float_op():
    a = np.array([1.0], np.float16)
    b = np.array([2.0**-11], np.float16)
    spec = OpSpec("Add", lambda v: [Sample("pair", (a, b))], ("float16",), golden="native")

    (result,) = golden(_one_case(spec, "float16"))

    assert result.dtype == np.float16
    assert result[0] == a[0] + b[0]


def test_given_golden_returns_the_outputs_given():
    base = _one_case(OpSpec("Add", lambda v: [Sample("s", (v(2), v(2)))], ("float32",)),
                     "float32")
    expected = (np.array([1.0, 2.0]),)
    case = Case(base.case_id, "onnx", "Add", "", "float32", base.model, base.feeds,
                policy("rounding", "float32"), "given", expected)

    (result,) = golden(case)

    assert result is expected[0]


# --- the cross-check: onnxruntime against the golden, on the whole database in float32 ---------


def _ort_session(case: Case) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(case.model, options, providers=["CPUExecutionProvider"])


def _ort_value(value: np.ndarray) -> onnxruntime.OrtValue:
    # onnxruntime's numpy binding knows no bfloat16: hand it the bits with the ONNX type
    if value.dtype == ml_dtypes.bfloat16:
        bits = np.array(value, order="C").view(np.uint16)  # keeps rank 0
        return onnxruntime.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, TensorProto.BFLOAT16)
    return onnxruntime.OrtValue.ortvalue_from_numpy(np.array(value, order="C"))


def _from_ort_value(value: onnxruntime.OrtValue) -> np.ndarray:
    if value.data_type() != "tensor(bfloat16)":
        return np.asarray(value.numpy())
    shape = tuple(value.shape())
    count = int(np.prod(shape))
    if count == 0:
        return np.zeros(shape, ml_dtypes.bfloat16)
    bits = (ctypes.c_uint16 * count).from_address(value.data_ptr())
    return np.frombuffer(bits, np.uint16).copy().view(ml_dtypes.bfloat16).reshape(shape)


def _ort_run(session: onnxruntime.InferenceSession, case: Case) -> list[np.ndarray]:
    feeds = {name: _ort_value(value) for name, value in case.feeds.items()}
    return [_from_ort_value(value) for value in session.run_with_ort_values(None, feeds)]


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{exc.__class__.__name__}: {lines[0] if lines else ''}"[:300]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # exp(inf) and friends in the evaluator
def test_onnxruntime_agrees_with_the_golden_on_every_float32_case():
    cases = [case for spec in all_specs() for case in spec_cases(spec, ["float32"])]
    assert cases, "the OpSpec database yields no float32 case"
    no_kernel: list[str] = []
    failures: list[str] = []
    for case in cases:
        try:
            session = _ort_session(case)
        except Exception as exc:  # noqa: BLE001  # onnxruntime raises its own pybind types
            if "NOT_IMPLEMENTED" in str(exc):
                no_kernel.append(case.case_id)
            else:
                failures.append(f"{case.case_id}: session: {_first_line(exc)}")
            continue
        try:
            expected = golden(case)
        except Exception as exc:  # noqa: BLE001  # the reference evaluator raises anything
            failures.append(f"{case.case_id}: golden: {_first_line(exc)}")
            continue
        try:
            actual = _ort_run(session, case)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{case.case_id}: run: {_first_line(exc)}")
            continue
        errors = compare_outputs(case, actual, expected)
        if not errors.passed:
            failures.append(
                f"{case.case_id}: max_ulp={errors.max_ulp:g} max_rel={errors.max_rel:g} "
                f"mismatch={errors.mismatch_ratio:g} rtol={case.tolerance.rtol:g} "
                f"{errors.message}".rstrip()
            )

    assert not failures, (
        f"{len(failures)} of {len(cases)} float32 cases disagree with the golden:\n"
        + "\n".join(failures)
    )
    assert 2 * len(no_kernel) < len(cases), (
        f"onnxruntime has no kernel for {len(no_kernel)} of {len(cases)} cases: {no_kernel}"
    )
