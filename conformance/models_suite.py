"""Whole models of the tests, exported from torch and compared end to end with float64.

The tolerance of a model is the sum of its nodes' policy tolerances (first-order error
propagation through a well-conditioned network): each node contributes the rtol its op kind
and accumulation length earn in tolerance.py. Export needs torch (`pip install xpuport[export]`).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from xpuport.conformance.cases import Case
from xpuport.conformance.ops import all_specs
from xpuport.conformance.spec import ToleranceKind
from xpuport.conformance.tolerance import Tolerance, policy
from xpuport.ir.canonicalize import canonicalize
from xpuport.ir.inspect import TensorSpec
from xpuport.ir.load import load_model

# (factory, input shape, dtypes): small enough for the float64 reference evaluator. The
# float16 encoder is what an NPU's matrix unit takes (float32 matmuls it declines).
MODELS = {
    "mlp": ("xpuport.benchmarks.models:mlp", (8, 64), ("float32",)),
    "cnn": ("xpuport.benchmarks.models:small_cnn", (1, 3, 32, 32), ("float32",)),
    "encoder": ("xpuport.benchmarks.models:encoder", (2, 16, 64), ("float32", "float16")),
}
_ACCUMULATING = ("MatMul", "Gemm", "Conv", "ConvTranspose", "Softmax", "LayerNormalization")


def model_cases(names: Sequence[str] = ()) -> Iterator[Case]:
    from xpuport.ir.export import export_module, load_factory

    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        from xpuport.conformance.results import ResultsError

        raise ResultsError(f"unknown models {', '.join(unknown)}",
                           f"the models suite has {', '.join(MODELS)}")
    for name, (factory, shape, dtypes) in MODELS.items():
        if names and name not in names:
            continue
        for dtype in dtypes:
            module = load_factory(factory)
            module = module.half() if dtype == "float16" else module
            with tempfile.TemporaryDirectory() as folder:
                path = export_module(module, [TensorSpec("x", shape, dtype)],
                                     Path(folder) / f"{name}.onnx")
                model = canonicalize(load_model(path))
            feeds = {"x": np.random.default_rng(0).uniform(-1, 1, shape).astype(dtype)}
            yield Case(f"{name}.{dtype}", "models", name, "models", dtype,
                       model.SerializeToString(), feeds, model_tolerance(model, dtype))


def model_tolerance(model: onnx.ModelProto, dtype: str = "float32") -> Tolerance:
    rtol = sum(node_tolerances(model, dtype))
    return Tolerance(rtol, rtol, f"sum over {len(model.graph.node)} nodes of their {dtype} "
                                 "policy")


def node_tolerances(model: onnx.ModelProto, dtype: str = "float32") -> list[float]:
    """Each node's policy rtol in `dtype`, in graph order (the graph is sorted)."""
    kinds: dict[str, ToleranceKind] = {spec.op: spec.kind for spec in all_specs()}
    shapes = _shapes(model)
    found = []
    for node in model.graph.node:
        kind = kinds.get(node.op_type, "rounding")
        length = _accumulation(node, shapes) if node.op_type in _ACCUMULATING else 1
        found.append(policy("accumulate" if length > 1 else kind, dtype, length).rtol)
    return found


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    return shapes


def _accumulation(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int:
    first = shapes.get(node.input[0], [])
    if node.op_type == "Conv" and len(node.input) > 1:
        weight = shapes.get(node.input[1], [])
        return math.prod(weight[1:]) if weight else 1
    return first[-1] if first and first[-1] > 0 else 1
