"""What a graph holds: signature, op inventory, parameter count, content hash."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from xpuport.errors import ModelFileError
from xpuport.ir.canonicalize import default_opset


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: dims are ints, or strings for symbolic dims."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TensorSpec:
        shape = data["shape"]
        assert isinstance(shape, list)
        return cls(str(data["name"]), tuple(shape), str(data["dtype"]))

    @property
    def is_static(self) -> bool:
        return all(isinstance(dim, int) for dim in self.shape)


@dataclass(frozen=True)
class GraphSummary:
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    op_counts: tuple[tuple[str, int], ...]
    node_count: int
    parameter_count: int
    parameter_bytes: int
    graph_hash: str


def summarize(model: onnx.ModelProto) -> GraphSummary:
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    ops = Counter(_op_name(node) for node in iter_nodes(graph))
    params = [onnx.numpy_helper.to_array(init) for init in graph.initializer]
    return GraphSummary(
        opset=default_opset(model),
        inputs=tuple(value_spec(v) for v in graph.input if v.name not in initializer_names),
        outputs=tuple(value_spec(v) for v in graph.output),
        op_counts=tuple(sorted(ops.items(), key=lambda item: (-item[1], item[0]))),
        node_count=sum(ops.values()),
        parameter_count=sum(int(p.size) for p in params),
        parameter_bytes=sum(int(p.nbytes) for p in params),
        graph_hash=graph_hash(model),
    )


def graph_hash(model: onnx.ModelProto) -> str:
    """sha256 of the deterministic serialization of the model: its content identity."""
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, including those inside If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from iter_nodes(attr.g)
            for subgraph in attr.graphs:
                yield from iter_nodes(subgraph)


def value_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    if value.type.WhichOneof("value") != "tensor_type" or not value.type.tensor_type.elem_type:
        kind = value.type.WhichOneof("value") or "untyped"
        raise ModelFileError(
            f"graph input/output '{value.name}' has type {kind}, not a typed tensor",
            "xpuport compiles graphs whose inputs and outputs are tensors: export the model "
            "with tensor inputs and outputs")
    tensor_type = value.type.tensor_type
    dims: list[int | str] = []
    for index, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or f"{value.name}_dim{index}")
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    return TensorSpec(value.name, tuple(dims), dtype.name)


def _op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
