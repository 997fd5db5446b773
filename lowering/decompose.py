"""Coverage before fallback: a node the backend declines is replaced by simpler ONNX nodes
(its ONNX function body, else one of xpuport's own rules in rules.py, else, for float16 or
bfloat16 values, the node computed in float32 between casts) when every node of
the replacement runs on the backend, expanded again where needed. Otherwise it stays as it
is, and placement sends it to the host. Each replacement is recorded, and its nodes are named
`<node>/<op>_<k>` so that the placement can say where they came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import onnx
import onnx_ir as ir
from onnx import AttributeProto, FunctionProto, NodeProto, defs

from xpuport.backends.base import Backend
from xpuport.hw_profiles import HardwareProfile
from xpuport.ir.canonicalize import canonicalize
from xpuport.lowering.rules import RULES, GraphView, has_half_values, in_float32

MAX_DEPTH = 3  # function bodies of function bodies of ...: deep enough for ONNX's own
SEPARATOR = "/"


@dataclass(frozen=True)
class Decomposition:
    node: str
    op: str
    via: str  # "onnx-function" or "xpuport-rule"
    members: tuple[str, ...]  # the nodes that replace it, after every nested expansion

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "op": self.op, "via": self.via, "nodes": len(self.members)}


def decompose(model: onnx.ModelProto, backend: Backend, profile: HardwareProfile
              ) -> tuple[onnx.ModelProto, list[Decomposition]]:
    """`model` with declined nodes expanded where the expansion runs wholly on the backend;
    each expansion is canonicalized (shapes inferred, constants folded and lifted)."""
    # typed intermediate values: context-dependent function bodies are built from them
    model = _named(onnx.shape_inference.infer_shapes(model))
    done: list[Decomposition] = []
    for name in _declined(model, set(), backend, profile):
        node = _find(model, name)
        if node is None:
            continue  # folded away when an earlier expansion was canonicalized
        promised = _output_types(model, node.output)
        known = {n.name for n in model.graph.node} - {name}  # what the expansion adds is new
        for via, replacement in _candidates(model, node):
            settled = _settle(_replaced(model, node, replacement), known, backend, profile, 1)
            if settled is not None and _output_types(settled, node.output) == promised:
                model = settled
                members = tuple(n.name for n in model.graph.node if n.name not in known)
                done.append(Decomposition(name, node.op_type, via, members))
                break
    return model, done


def _settle(model: onnx.ModelProto, known: set[str], backend: Backend,
            profile: HardwareProfile, depth: int) -> onnx.ModelProto | None:
    """Fold an expansion (the nodes not `known`), then expand what the backend still declines
    in it; None when some node of it can be neither run nor expanded."""
    model = canonicalize(model)
    for name in _declined(model, known, backend, profile):
        if depth >= MAX_DEPTH:
            return None
        node = _find(model, name)
        if node is None:
            continue
        for _via, replacement in _candidates(model, node):
            settled = _settle(_replaced(model, node, replacement), known, backend, profile,
                              depth + 1)
            if settled is not None:
                model = settled
                break
        else:
            return None
    return model


def _output_types(model: onnx.ModelProto, names: Sequence[str]) -> list[str]:
    """The types inference gives `names`, the graph's declared output types set aside: an
    expansion must compute what the node computed (ONNX's Celu body turns a 0-d input into
    shape [1], for one)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for output in probe.graph.output:
        output.type.tensor_type.ClearField("shape")
    del probe.graph.value_info[:]
    graph = onnx.shape_inference.infer_shapes(probe).graph
    typed = {v.name: v.type for v in [*graph.value_info, *graph.output]}
    return [str(typed.get(name, "")) for name in names]


def _declined(model: onnx.ModelProto, known: set[str], backend: Backend,
              profile: HardwareProfile) -> list[str]:
    """The names of the nodes, other than the `known` ones, that the backend declines."""
    graph = ir.from_proto(model).graph  # typed values, as partition sees them
    return [node.name or "" for node in graph
            if (node.name or "") not in known and not backend.supports(node, profile).supported]


def _find(model: onnx.ModelProto, name: str) -> NodeProto | None:
    return next((n for n in model.graph.node if n.name == name), None)


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every node named (placement and decomposition refer to nodes by name)."""
    taken = {n.name for n in model.graph.node if n.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = _fresh(f"{node.op_type}_{index}", taken)
    return model


def _fresh(name: str, taken: set[str]) -> str:
    candidate, k = name, 1
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    taken.add(candidate)
    return candidate


def _candidates(model: onnx.ModelProto, node: NodeProto) -> list[tuple[str, list[NodeProto]]]:
    """Replacements for `node`, best first: its ONNX function body, xpuport's rule for the op,
    then (for float16/bfloat16 values) the node computed in float32."""
    found = []
    body = function_body(model, node)
    if body is not None:
        found.append(("onnx-function", inline(node, body)))
    if node.domain not in ("", "ai.onnx"):
        return found
    graph = GraphView(model)
    rules = [RULES[node.op_type]] if node.op_type in RULES else []
    if has_half_values(node, graph):  # what fails in float16/bfloat16 may build in float32
        rules.append(in_float32)
    for rule in rules:
        nodes = rule(node, graph)
        if nodes is not None:
            found.append(("xpuport-rule", _prefixed(node, nodes)))  # values named by the rule
    return found


def function_body(model: onnx.ModelProto, node: NodeProto) -> FunctionProto | None:
    """The body ONNX defines for `node` at the model's opset, static or context-dependent."""
    domain = "" if node.domain == "ai.onnx" else node.domain
    opset = {o.domain or "": o.version for o in model.opset_import}.get(domain)
    if opset is None:
        return None
    try:
        # Any: onnx's stub for OpSchema omits the function-body methods it has at run time
        schema: Any = defs.get_schema(node.op_type, opset, domain)
    except defs.SchemaError:
        return None
    data = b""
    static = _latest(schema.function_opset_versions, opset)
    contextual = _latest(schema.context_dependent_function_opset_versions, opset)
    if schema.has_function and static is not None:
        data = schema.get_function_with_opset_version(static)
    elif schema.has_context_dependent_function and contextual is not None:
        types = GraphView(model).types
        inputs = [types.get(name, onnx.TypeProto()).SerializeToString() for name in node.input]
        data = schema.get_context_dependent_function_with_opset_version(
            contextual, _with_defaults(node, schema).SerializeToString(), inputs)
    if not data:
        return None
    body = FunctionProto()
    body.ParseFromString(data)
    return body


def _latest(versions: list[int], opset: int) -> int | None:
    """The body ONNX applies at `opset`: the newest defined at or before it."""
    return max((v for v in versions if v <= opset), default=None)


def _with_defaults(node: NodeProto, schema: Any) -> NodeProto:
    """`node` with its schema's default attributes made explicit (bodies refer to them)."""
    filled = NodeProto()
    filled.CopyFrom(node)
    present = {a.name for a in node.attribute}
    for name, formal in schema.attributes.items():
        default = formal.default_value
        if name not in present and default is not None and default.type:
            attribute = filled.attribute.add()
            attribute.CopyFrom(default)
            attribute.name = name
    return filled


def inline(node: NodeProto, body: FunctionProto) -> list[NodeProto]:
    """`body` instantiated for `node`: its formals bound to the node's values and attributes,
    its inner values and nodes renamed under the node's name."""
    schema_node = node
    try:
        schema = defs.get_schema(node.op_type, max(o.version for o in body.opset_import),
                                 node.domain)
        schema_node = _with_defaults(node, schema)
    except (defs.SchemaError, ValueError):
        pass
    attributes = {a.name: a for a in schema_node.attribute}
    names = dict(zip(body.input, node.input, strict=False))
    names.update(zip(body.output, node.output, strict=False))
    expanded = []
    for inner in body.node:
        copy = NodeProto()
        copy.CopyFrom(inner)
        copy.ClearField("attribute")
        for attribute in inner.attribute:
            bound = _bound(attribute, attributes)
            if bound is not None:
                copy.attribute.append(bound)
        copy.input[:] = [_renamed(n, names, node) for n in inner.input]
        copy.output[:] = [_renamed(n, names, node) for n in inner.output]
        expanded.append(copy)
    return _prefixed(node, expanded)


def _bound(attribute: AttributeProto, given: dict[str, AttributeProto]) -> AttributeProto | None:
    if not attribute.ref_attr_name:
        return attribute
    actual = given.get(attribute.ref_attr_name)
    if actual is None:
        return None  # an optional attribute the node does not set
    bound = AttributeProto()
    bound.CopyFrom(actual)
    bound.name = attribute.name
    return bound


def _renamed(name: str, names: dict[str, str], node: NodeProto) -> str:
    if not name:
        return ""
    return names.get(name, f"{node.name}{SEPARATOR}{name}")


def _prefixed(node: NodeProto, nodes: list[NodeProto]) -> list[NodeProto]:
    """Name the replacement's nodes under `node`."""
    for index, new in enumerate(nodes):
        new.name = f"{node.name}{SEPARATOR}{new.op_type}_{index}"
    return nodes


def _replaced(model: onnx.ModelProto, node: NodeProto, nodes: list[NodeProto]
              ) -> onnx.ModelProto:
    """A copy of `model` with `node` replaced by `nodes` (in its place: order stays valid)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    index = next(i for i, n in enumerate(graph.node) if n.name == node.name)
    kept = [*graph.node[:index], *nodes, *graph.node[index + 1:]]
    del graph.node[:]
    graph.node.extend(kept)
    return result
