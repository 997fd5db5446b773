"""onnxruntime's CPU execution provider: a second real engine, so the suite compares two.

It builds no TVM artifact; `session` prepares a graph for onnxruntime directly. What it
supports is read from onnxruntime's own kernel registry, not assumed.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnxruntime.capi import _pybind_state

from xpuport.backends.base import Backend, Support
from xpuport.hw_profiles import HardwareProfile

Kernels = list[tuple[int, int, dict[str, frozenset[str]]]]


@cache
def kernel_types(provider: str) -> dict[tuple[str, str], Kernels]:
    """(domain, op) -> [(first version, last version, types per constraint)] of a provider."""
    # get_all_opkernel_def is onnxruntime's registry as its Python binding exposes it.
    table: dict[tuple[str, str], Kernels] = {}
    for kernel in _pybind_state.get_all_opkernel_def():
        if kernel.provider != provider:
            continue
        types = {name: frozenset(ts) for name, ts in kernel.type_constraints.items()}
        first, last = kernel.version_range
        table.setdefault((kernel.domain, kernel.op_name), []).append((first, last, types))
    return table


def _schema(node: ir.Node) -> Any:
    graph = node.graph
    opset = node.version or (graph.opset_imports.get(node.domain) if graph else None)
    try:
        return onnx.defs.get_schema(node.op_type, opset or onnx.defs.onnx_opset_version(),
                                    node.domain)
    except onnx.defs.SchemaError:
        return None


def _type_name(value: ir.Value) -> str:
    assert value.dtype is not None
    return f"tensor({onnx.TensorProto.DataType.Name(int(value.dtype)).lower()})"


def _bindings(node: ir.Node, schema: Any) -> dict[str, set[str]]:
    """The tensor types the node binds to each of its schema's type constraints (T, T1...)."""
    bound: dict[str, set[str]] = {}
    for values, formals in ((node.inputs, schema.inputs), (node.outputs, schema.outputs)):
        for index, value in enumerate(values):
            if value is None or value.dtype is None or not formals:
                continue
            formal = formals[min(index, len(formals) - 1)]  # variadic: the last one repeats
            bound.setdefault(formal.type_str, set()).add(_type_name(value))
    return bound


def _fits(kernel: dict[str, frozenset[str]], bound: dict[str, set[str]]) -> bool:
    return all(types <= kernel[name] for name, types in bound.items() if name in kernel)


class OrtBackend(Backend):
    name = "ort"

    def default_profile(self) -> str:
        return "onnxruntime/cpu"

    def provider(self, profile: HardwareProfile) -> str:
        return str(profile.target.get("provider", "CPUExecutionProvider"))

    def supports(self, node: ir.Node, profile: HardwareProfile) -> Support:
        schema = _schema(node)
        if schema is None:
            return Support.no(f"ONNX defines no {node.domain or 'ai.onnx'}::{node.op_type}")
        domain = "" if node.domain == "ai.onnx" else node.domain
        kernels = kernel_types(self.provider(profile)).get((domain, node.op_type))
        if not kernels:
            if node.op_type == "Constant" or schema.has_function or \
                    schema.has_context_dependent_function:
                return Support.yes()  # onnxruntime folds constants and inlines function ops
            return Support.no(f"onnxruntime registers no {node.op_type} kernel")
        version, bound = schema.since_version, _bindings(node, schema)
        for first, last, types in kernels:
            if first <= version <= last and _fits(types, bound):
                return Support.yes()
        wanted = ", ".join(sorted(t for ts in bound.values() for t in ts))
        return Support.no(f"onnxruntime has no {node.op_type}-{version} kernel for {wanted}")

    def session(self, model: bytes, profile: HardwareProfile) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are not the user's
        return ort.InferenceSession(model, options, providers=[self.provider(profile)])

    def is_available(self) -> bool:
        return "CPUExecutionProvider" in ort.get_available_providers()

    def cache_key(self, profile: HardwareProfile) -> str:
        return f"onnxruntime={ort.__version__};provider={self.provider(profile)}"
