"""conformance/cases.py and spec.py: OpSpec records turned into one-node ONNX cases."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest

from xpuport.conformance.cases import SpecError, output_dtypes, spec_cases
from xpuport.conformance.spec import Const, OpSpec, Override, Sample, Values, numpy_dtype


def _binary(v: Values):
    yield Sample("same_shape", (v(2, 3), v(2, 3)))
    yield Sample("broadcast", (v(2, 3), v(3)))


ADD = OpSpec("Add", _binary, ("float32", "float16", "int64"), family="elementwise")


def _clip(v: Values):
    yield Sample("min_only", (v(4, 5, low=-2, high=2), Const(v.cast(-0.5)), None))


CLIP = OpSpec("Clip", _clip, ("float32",), kind="exact")


def test_case_ids_are_op_dtype_sample():
    cases = list(spec_cases(ADD))

    assert [case.case_id for case in cases] == [
        "Add.float32.same_shape", "Add.float32.broadcast",
        "Add.float16.same_shape", "Add.float16.broadcast",
        "Add.int64.same_shape", "Add.int64.broadcast",
    ]
    assert {(case.op, case.family, case.suite) for case in cases} == {
        ("Add", "elementwise", "ops")}


def test_spec_cases_keeps_only_the_dtypes_asked_for():
    cases = list(spec_cases(ADD, ["float16", "bfloat16"]))

    assert [case.dtype for case in cases] == ["float16", "float16"]


def test_case_feeds_are_in_the_case_dtype():
    for case in spec_cases(ADD):
        assert set(case.feeds) == {"x0", "x1"}
        assert {value.dtype for value in case.feeds.values()} == {numpy_dtype(case.dtype)}
        assert output_dtypes(case.onnx_model()) == [case.dtype]


def test_case_tolerance_follows_the_policy():
    by_dtype = {case.dtype: case.tolerance for case in spec_cases(ADD)}

    assert by_dtype["float32"].rtol == 2 * 2.0**-24
    assert by_dtype["int64"].rtol == 0.0


def test_accumulation_of_the_sample_reaches_the_tolerance():
    spec = OpSpec("ReduceSum", lambda v: [Sample("rows", (v(3, 64),), {"keepdims": 0},
                                                 accumulation=64)],
                  ("float32",), kind="accumulate")

    (case,) = spec_cases(spec)

    assert "n=64" in case.tolerance.basis


def test_override_reaches_the_tolerance_of_its_dtype_only():
    override = Override(1e-2, 1e-2, "half precision library rounds twice")
    spec = OpSpec("Add", _binary, ("float32", "float16"), overrides={"float16": override})

    by_dtype = {case.dtype: case.tolerance for case in spec_cases(spec)}

    assert by_dtype["float16"].override == "half precision library rounds twice"
    assert by_dtype["float16"].rtol == 1e-2
    assert by_dtype["float32"].override is None


def test_const_inputs_become_initializers_and_are_not_fed():
    (case,) = spec_cases(CLIP)
    model = case.onnx_model()

    assert [init.name for init in model.graph.initializer] == ["x1"]
    assert [value.name for value in model.graph.input] == ["x0"]
    assert set(case.feeds) == {"x0"}
    assert onnx.numpy_helper.to_array(model.graph.initializer[0]) == np.float32(-0.5)


def test_omitted_optional_input_is_an_empty_name():
    (case,) = spec_cases(CLIP)
    (node,) = case.onnx_model().graph.node

    assert list(node.input) == ["x0", "x1", ""]
    assert list(node.output) == ["y0"]


def test_attributes_reach_the_node():
    spec = OpSpec("Transpose", lambda v: [Sample("perm", (v(2, 3, 4),), {"perm": [2, 0, 1]})],
                  ("float32",), kind="exact")

    (case,) = spec_cases(spec)
    (node,) = case.onnx_model().graph.node

    assert [(a.name, list(a.ints)) for a in node.attribute] == [("perm", [2, 0, 1])]
    (output,) = case.onnx_model().graph.output
    assert [d.dim_value for d in output.type.tensor_type.shape.dim] == [4, 2, 3]


def test_models_pass_the_full_checker():
    for case in [*spec_cases(ADD), *spec_cases(CLIP)]:
        onnx.checker.check_model(case.onnx_model(), full_check=True)


def test_composition_nodes_replace_the_single_node():
    def double_then_add(inputs, outputs, sample):
        return [onnx.helper.make_node("Add", [inputs[0], inputs[0]], ["twice"]),
                onnx.helper.make_node("Add", ["twice", inputs[1]], outputs)]

    spec = OpSpec("DoubleAdd", _binary, ("float32",), nodes=double_then_add)

    case = next(spec_cases(spec))

    assert [node.op_type for node in case.onnx_model().graph.node] == ["Add", "Add"]
    assert case.case_id == "DoubleAdd.float32.same_shape"


def test_duplicate_sample_names_raise():
    def twice(v: Values):
        yield Sample("same", (v(2), v(2)))
        yield Sample("same", (v(3), v(3)))

    spec = OpSpec("Add", twice, ("float32",), family="elementwise")

    with pytest.raises(SpecError, match="two samples named 'same'"):
        list(spec_cases(spec))


def test_an_invalid_sample_raises_naming_the_case():
    spec = OpSpec("Add", lambda v: [Sample("bad", (v(2, 3), v(4)))], ("float32",))

    with pytest.raises(SpecError, match=r"Add\.float32\.bad") as raised:
        list(spec_cases(spec))

    assert raised.value.fix  # every xpuport error carries its fix


@pytest.mark.parametrize("attributes", [{"alpha": 0.5}, {"perm": 1.5}])
def test_an_invalid_attribute_raises_naming_the_case(attributes):
    op = "Relu" if "alpha" in attributes else "Transpose"
    spec = OpSpec(op, lambda v: [Sample("attr", (v(2, 3),), attributes)], ("float32",))

    with pytest.raises(SpecError, match=rf"{op}\.float32\.attr"):
        list(spec_cases(spec))


def test_an_op_onnx_does_not_know_raises_naming_the_case():
    spec = OpSpec("NoSuchOp", lambda v: [Sample("a", (v(2),))], ("float32",))

    with pytest.raises(SpecError, match=r"NoSuchOp\.float32\.a"):
        list(spec_cases(spec))


# --- spec.Values ------------------------------------------------------------------------------


def _draw(op: str, dtype: str) -> list[np.ndarray]:
    v = Values(op, dtype)
    return [v(3, 4), v.positive(5), v.ints(4, low=0, high=9), v.permutation(6)]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int32", "uint8", "bool"])
def test_values_are_deterministic_for_op_and_dtype(dtype):
    first, second = _draw("Add", dtype), _draw("Add", dtype)

    for a, b in zip(first, second, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_values_differ_between_ops():
    assert not np.array_equal(Values("Add", "float32")(16), Values("Mul", "float32")(16))


def test_spec_cases_are_deterministic():
    first = [dict(case.feeds) for case in spec_cases(ADD)]
    second = [dict(case.feeds) for case in spec_cases(ADD)]

    for a, b in zip(first, second, strict=True):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("float32", np.float32), ("float16", np.float16), ("bfloat16", ml_dtypes.bfloat16),
     ("int64", np.int64), ("int8", np.int8), ("uint16", np.uint16)],
)
def test_values_are_drawn_in_the_case_dtype(dtype, expected):
    v = Values("Add", dtype)

    values = v(4, 5, low=-3, high=3)

    assert values.dtype == np.dtype(expected)
    assert values.shape == (4, 5)
    assert v.cast([0.5, 1.5]).dtype == np.dtype(expected)
    if np.dtype(expected).kind in "iu":
        assert values.min() >= max(-3, np.iinfo(dtype).min)
        assert values.max() <= 3


def test_values_ranges():
    v = Values("Log", "float32")

    assert (np.abs(v(100)) <= 1.0).all()
    assert (v.positive(100) >= 0.125).all()
    assert v.ints(10, low=2, high=4).dtype == np.int64
    assert set(v.ints(100, low=2, high=4).tolist()) <= {2, 3, 4}
    assert sorted(v.permutation(5).tolist()) == [0, 1, 2, 3, 4]
    assert v.bools(3).dtype == np.bool_


def test_special_values_include_the_edges():
    special = Values("Exp", "float16").special()

    assert special.dtype == np.float16
    assert np.isnan(special).any()
    assert np.isposinf(special).any()
    assert np.isneginf(special).any()
    assert np.signbit(special[(special == 0)]).any()  # -0.0 is there


# --- Override and OpSpec validation -----------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   ", "short"])
def test_override_refuses_an_empty_reason(reason):
    with pytest.raises(ValueError, match="reason"):
        Override(1e-2, 1e-2, reason)


def test_opspec_refuses_overrides_for_dtypes_it_does_not_test():
    override = Override(1e-2, 1e-2, "bfloat16 kernels accumulate in bfloat16")

    with pytest.raises(ValueError, match="bfloat16"):
        OpSpec("Add", _binary, ("float32",), overrides={"bfloat16": override})
