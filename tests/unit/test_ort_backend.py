"""backends/ort.py: onnxruntime's CPU provider as a backend, its support read from its registry."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime
import pytest
from onnx import TensorProto, helper

import xpuport.api
from xpuport.backends import registry
from xpuport.backends.ort import OrtBackend, kernel_types
from xpuport.conformance.cases import spec_cases
from xpuport.conformance.ops import all_specs
from xpuport.errors import CompileError
from xpuport.hw_profiles import load_profile

PROVIDER = "CPUExecutionProvider"


def _model(
    op_type: str,
    elem_type: int = TensorProto.FLOAT,
    domain: str = "",
    opset: int = 20,
    inputs: int = 2,
    shape: tuple[int, ...] = (2, 3),
) -> onnx.ModelProto:
    names = [f"x{index}" for index in range(inputs)]
    node = helper.make_node(op_type, names, ["y"], domain=domain)
    graph = helper.make_graph(
        [node],
        "one",
        [helper.make_tensor_value_info(name, elem_type, list(shape)) for name in names],
        [helper.make_tensor_value_info("y", elem_type, list(shape))],
    )
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=opsets)


def _node(op_type: str, elem_type: int = TensorProto.FLOAT, **kwargs) -> ir.Node:
    """The single node of a one-node model, through onnx_ir."""
    (node,) = ir.from_proto(_model(op_type, elem_type, **kwargs)).graph
    return node


def _has_kernel(op: str, type_name: str) -> bool:
    kernels = kernel_types(PROVIDER).get(("", op), [])
    return any(type_name in types for _, _, types in _flat(kernels))


def _flat(kernels):
    """(first, last, all types) whatever the shape of the registry's type constraints."""
    for first, last, types in kernels:
        if isinstance(types, dict):
            yield first, last, frozenset(t for ts in types.values() for t in ts)
        else:
            yield first, last, frozenset(types)


@pytest.fixture(scope="module")
def profile():
    return load_profile("onnxruntime/cpu")


@pytest.fixture(scope="module")
def backend():
    return OrtBackend()


def test_kernel_types_is_the_cpu_registry():
    table = kernel_types(PROVIDER)

    assert ("", "Add") in table
    assert ("", "MatMul") in table
    assert ("", "NoSuchOp") not in table
    assert _has_kernel("Add", "tensor(float)")


def test_supports_a_float32_add_at_opset_20(backend, profile):
    support = backend.supports(_node("Add"), profile)

    assert support.supported
    assert support.reason == ""


@pytest.mark.parametrize("elem_type", [TensorProto.DOUBLE, TensorProto.INT64, TensorProto.INT32])
def test_supports_add_in_the_dtypes_onnxruntime_registers(backend, profile, elem_type):
    assert backend.supports(_node("Add", elem_type), profile).supported


def test_declines_a_dtype_onnxruntime_lacks(backend, profile):
    if _has_kernel("Add", "tensor(bfloat16)"):
        pytest.skip("onnxruntime now registers a bfloat16 Add kernel")

    support = backend.supports(_node("Add", TensorProto.BFLOAT16), profile)

    assert not support.supported
    assert "Add" in support.reason
    assert "bfloat16" in support.reason


def test_the_declined_dtype_is_one_onnxruntime_cannot_run():
    model = _model("Add", TensorProto.BFLOAT16)

    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        onnxruntime.InferenceSession(model.SerializeToString(), providers=[PROVIDER])


def test_declines_an_op_onnxruntime_lacks(backend, profile):
    schema = onnx.defs.get_schema("ImageDecoder", 20)
    if ("", "ImageDecoder") in kernel_types(PROVIDER) or schema.has_function:
        pytest.skip("onnxruntime now runs ImageDecoder")
    node = _node("ImageDecoder", TensorProto.UINT8, inputs=1, shape=(16,))

    support = backend.supports(node, profile)

    assert not support.supported
    assert "ImageDecoder" in support.reason


def test_declines_an_unknown_domain(backend, profile):
    support = backend.supports(_node("Relu", domain="com.vendor", inputs=1), profile)

    assert not support.supported
    assert "Relu" in support.reason


def test_declines_an_op_onnx_does_not_define(backend, profile):
    support = backend.supports(_node("NoSuchOp", inputs=1), profile)

    assert not support.supported
    assert "NoSuchOp" in support.reason


def test_is_available():
    assert OrtBackend().is_available()


def test_default_profile_is_the_onnxruntime_cpu(backend, profile):
    assert backend.default_profile() == "onnxruntime/cpu"
    assert backend.provider(profile) == PROVIDER


def test_cache_key_names_the_onnxruntime_version(backend, profile):
    key = backend.cache_key(profile)

    assert f"onnxruntime={onnxruntime.__version__}" in key
    assert PROVIDER in key


def test_session_runs_a_graph(backend, profile):
    session = backend.session(_model("Add").SerializeToString(), profile)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)

    (y,) = session.run(None, {"x0": x, "x1": x})

    np.testing.assert_array_equal(y, 2 * x)


def test_the_registry_lists_ort_as_builtin():
    entries = {entry.name: entry for entry in registry.discover()}

    assert entries["ort"].origin == "builtin"
    assert entries["ort"].backend_class is OrtBackend
    assert entries["ort"].error is None
    assert isinstance(registry.get_backend("ort"), OrtBackend)


def test_compile_for_ort_builds_no_artifact(tmp_path):
    path = tmp_path / "add.onnx"
    onnx.save_model(_model("Add"), path)

    with pytest.raises(CompileError, match="builds no artifact") as raised:
        xpuport.api.compile(path, backend="ort")

    assert "conform --backend ort" in raised.value.fix


def test_supports_agrees_with_onnxruntime_on_every_float32_case(backend, profile):
    """Declined exactly when onnxruntime finds no kernel: its registry is read, not assumed."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    disagree = []
    cases = [case for spec in all_specs() for case in spec_cases(spec, ["float32"])]
    for case in cases:
        graph = ir.from_proto(case.onnx_model()).graph
        declined = [node.op_type for node in graph.all_nodes()
                    if not backend.supports(node, profile).supported]
        try:
            onnxruntime.InferenceSession(case.model, options, providers=[PROVIDER])
            missing = ""
        except Exception as exc:  # noqa: BLE001  # onnxruntime raises its own pybind types
            missing = str(exc) if "NOT_IMPLEMENTED" in str(exc) else ""
        if bool(declined) != bool(missing):
            disagree.append(f"{case.case_id}: declined {declined}, onnxruntime: "
                            f"{missing.splitlines()[0] if missing else 'runs'}")

    assert cases
    assert not disagree, "\n".join(disagree)
