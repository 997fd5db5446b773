"""onnxruntime's CPU execution provider: a second real engine, so the suite compares two.

It builds no TVM artifact; `session` prepares a graph for onnxruntime directly. What it
supports is read from onnxruntime's own kernel registry, not assumed.
"""

from __future__ import annotations

from functools import cache

import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnxruntime.capi import _pybind_state

from xpuport.backends.base import Backend, Support, node_dtypes
from xpuport.hw_profiles import HardwareProfile

_ONNX_TYPE = {"bfloat16": "bfloat16", "bool": "bool", "float64": "double", "float32": "float",
              "float16": "float16"}


@cache
def kernel_types(provider: str) -> dict[tuple[str, str], list[tuple[int, int, frozenset[str]]]]:
    """(domain, op) -> [(first version, last version, element types)] of one provider."""
    # get_all_opkernel_def is onnxruntime's registry as its Python binding exposes it.
    table: dict[tuple[str, str], list[tuple[int, int, frozenset[str]]]] = {}
    for kernel in _pybind_state.get_all_opkernel_def():
        if kernel.provider != provider:
            continue
        types = frozenset(t for ts in kernel.type_constraints.values() for t in ts)
        first, last = kernel.version_range
        table.setdefault((kernel.domain, kernel.op_name), []).append((first, last, types))
    return table


def _since_version(node: ir.Node) -> int | None:
    graph = node.graph
    opset = node.version or (graph.opset_imports.get(node.domain) if graph else None)
    if opset is None:
        return None
    try:
        return int(onnx.defs.get_schema(node.op_type, opset, node.domain).since_version)
    except onnx.defs.SchemaError:
        return None


class OrtBackend(Backend):
    name = "ort"

    def default_profile(self) -> str:
        return "onnxruntime/cpu"

    def provider(self, profile: HardwareProfile) -> str:
        return str(profile.target.get("provider", "CPUExecutionProvider"))

    def supports(self, node: ir.Node, profile: HardwareProfile) -> Support:
        domain = "" if node.domain == "ai.onnx" else node.domain
        kernels = kernel_types(self.provider(profile)).get((domain, node.op_type))
        if not kernels:
            return Support.no(f"onnxruntime registers no {node.op_type} kernel")
        version = _since_version(node)
        wanted = {f"tensor({_ONNX_TYPE.get(d, d)})" for d in node_dtypes(node)}
        for first, last, types in kernels:
            if (version is None or first <= version <= last) and wanted <= types:
                return Support.yes()
        return Support.no(
            f"onnxruntime has no {node.op_type}-{version} kernel for {', '.join(sorted(wanted))}"
        )

    def session(self, model: bytes, profile: HardwareProfile) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are not the user's
        return ort.InferenceSession(model, options, providers=[self.provider(profile)])

    def is_available(self) -> bool:
        return "CPUExecutionProvider" in ort.get_available_providers()

    def cache_key(self, profile: HardwareProfile) -> str:
        return f"onnxruntime={ort.__version__};provider={self.provider(profile)}"
