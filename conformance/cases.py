"""Cases: one sample of one op in one dtype, as a one-node ONNX model and its input values."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper

from xpuport.conformance.spec import Const, NodesFn, OpSpec, Sample, Values
from xpuport.conformance.tolerance import Tolerance, policy, with_override
from xpuport.errors import XpuportError


class SpecError(XpuportError):
    """An OpSpec record cannot be turned into a valid ONNX model."""


@dataclass(frozen=True)
class Case:
    """Everything a worker needs to run one case; picklable, independent of the database."""

    case_id: str
    suite: str
    op: str
    family: str
    dtype: str
    model: bytes  # the serialized ONNX model, in the dtype under test
    feeds: Mapping[str, np.ndarray]
    tolerance: Tolerance
    # float64: upcast graph on the reference evaluator; native: same dtype; given: `expected`
    golden: Literal["float64", "native", "given"] = "float64"
    expected: tuple[np.ndarray, ...] | None = None
    declined: str = ""  # the suite cannot express this case to a backend: why (unsupported)

    def onnx_model(self) -> onnx.ModelProto:
        return onnx.load_model_from_string(self.model)


def spec_cases(spec: OpSpec, dtypes: Sequence[str] | None = None) -> Iterator[Case]:
    """The cases of one spec, in the dtypes asked for (all of the spec's when None)."""
    for dtype in spec.dtypes:
        if dtypes is not None and dtype not in dtypes:
            continue
        names: set[str] = set()
        for sample in spec.samples(Values(spec.op, dtype)):
            if sample.name in names:
                raise SpecError(f"{spec.op}: two samples named '{sample.name}'",
                                f"rename one in conformance/ops/{spec.family}.py")
            names.add(sample.name)
            yield _case(spec, sample, dtype)


def _case(spec: OpSpec, sample: Sample, dtype: str) -> Case:
    case_id = f"{spec.op}.{dtype}.{sample.name}"
    model, feeds = node_model(spec.op, sample, spec.opset, case_id, spec.nodes)
    tolerance = with_override(policy(spec.kind, dtype, sample.accumulation),
                              spec.overrides.get(dtype))
    return Case(case_id, "ops", spec.op, spec.family, dtype, model.SerializeToString(),
                feeds, tolerance, spec.golden)


def node_model(
    op: str, sample: Sample, opset: int, case_id: str, nodes: NodesFn | None = None
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A model of `op` (or the composition `nodes`) on `sample`, and its input values."""
    names, graph_inputs, initializers, feeds = [], [], [], {}
    for index, value in enumerate(sample.inputs):
        name = f"x{index}"
        if value is None:
            names.append("")
        elif isinstance(value, Const):
            names.append(name)
            initializers.append(numpy_helper.from_array(np.asarray(value.value), name))
        else:
            names.append(name)
            graph_inputs.append(_value_info(name, np.asarray(value)))
            feeds[name] = np.asarray(value)
    outputs = [f"y{index}" for index in range(sample.outputs)]
    if nodes is None:
        graph_nodes = [helper.make_node(op, names, outputs, name=op, **dict(sample.attributes))]
    else:
        graph_nodes = nodes(names, outputs, sample)
    graph = helper.make_graph(graph_nodes, case_id, graph_inputs, [], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return _with_inferred_outputs(model, outputs, case_id), feeds


def _value_info(name: str, value: np.ndarray) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(value.dtype)
    return helper.make_tensor_value_info(name, elem, list(value.shape))


def _with_inferred_outputs(
    model: onnx.ModelProto, outputs: list[str], case_id: str
) -> onnx.ModelProto:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise SpecError(f"case {case_id} is not a valid ONNX node: {_first_line(exc)}",
                        "fix the sample's inputs or attributes in conformance/ops/") from exc
    known = {vi.name: vi for vi in inferred.graph.value_info}
    missing = [name for name in outputs if name not in known]
    if missing:
        raise SpecError(f"case {case_id}: ONNX infers no type for outputs {missing}",
                        "give the sample inputs whose types determine the outputs")
    model.graph.output.extend(known[name] for name in outputs)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise SpecError(f"case {case_id} is not a valid ONNX node: {_first_line(exc)}",
                        "fix the sample's attributes in conformance/ops/") from exc
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def output_dtypes(model: onnx.ModelProto) -> list[str]:
    """The numpy names of a model's output dtypes (bfloat16 included)."""
    return [
        _dtype_name(output.type.tensor_type.elem_type) for output in model.graph.output
    ]


def _dtype_name(elem_type: int) -> str:
    if elem_type == onnx.TensorProto.BFLOAT16:
        return "bfloat16"
    if elem_type == onnx.TensorProto.UNDEFINED:  # a sequence, optional or map value
        return "undefined"
    return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))


def describe(case: Case) -> dict[str, Any]:
    """The case's inputs and attributes, short enough for a report's detail view."""
    model = case.onnx_model()
    node = model.graph.node[0] if len(model.graph.node) == 1 else None
    attributes = {a.name: _short(helper.get_attribute_value(a)) for a in node.attribute} \
        if node is not None else {}
    inputs = {name: f"{value.dtype}{list(value.shape)}" for name, value in case.feeds.items()}
    for init in model.graph.initializer:
        inputs[init.name] = f"const {_dtype_name(init.data_type)}{list(init.dims)}"
    return {"inputs": inputs, "attributes": attributes}


def _short(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, onnx.TensorProto):
        return f"tensor{list(value.dims)}"
    if isinstance(value, list):
        return [_short(v) for v in value][:16]
    if isinstance(value, int | float | str | bool):
        return value
    return type(value).__name__  # a subgraph, a sparse tensor, a type proto
