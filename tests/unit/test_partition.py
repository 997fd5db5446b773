"""partition(): maximal, acyclic, ordered regions, and a reason for every node."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from xpuport.backends.base import Support
from xpuport.backends.cpu import CpuBackend
from xpuport.hw_profiles import load_profile
from xpuport.lowering.partition import partition

PROFILE = load_profile("generic/x86-64")


class _Declines(CpuBackend):
    name = "declines"

    def __init__(self, ops):
        self.ops = set(ops)

    def supports(self, node, profile):
        if node.op_type in self.ops:
            return Support.no(f"no {node.op_type} here")
        return Support.yes()


def _model(nodes, inputs=("x",), output="y"):
    value = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "g", [value(i, TensorProto.FLOAT, [2]) for i in inputs],
                              [value(output, TensorProto.FLOAT, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _chain():
    return _model([helper.make_node("Relu", ["x"], ["a"], name="relu"),
                   helper.make_node("Celu", ["a"], ["b"], name="celu"),
                   helper.make_node("Add", ["b", "x"], ["c"], name="add"),
                   helper.make_node("Exp", ["x"], ["d"], name="side"),
                   helper.make_node("Mul", ["c", "d"], ["y"], name="mul")])


def _by_name(placement):
    return {node.node: node for node in placement.nodes}


def test_a_fully_supported_graph_is_one_device_region():
    placement = partition(_chain(), _Declines([]), PROFILE)
    assert placement.regions() == [(0, "device", 5)]
    assert not placement.fallback
    assert {n.reason for n in placement.nodes} == {"supported"}


def test_a_declined_node_splits_the_chain_and_says_why():
    placement = partition(_chain(), _Declines(["Celu"]), PROFILE)
    nodes = _by_name(placement)
    assert placement.regions() == [(0, "device", 2), (1, "host", 1), (2, "device", 2)]
    assert nodes["celu"].place == "host" and nodes["celu"].reason == "no Celu here"
    assert nodes["side"].region == 0  # independent of the host node: joins the first region
    assert nodes["add"].region == nodes["mul"].region == 2


def test_every_edge_runs_forward():
    model = _chain()
    placement = partition(model, _Declines(["Celu", "Exp"]), PROFILE)
    region = {n.node: n.region for n in placement.nodes}
    producer = {out: node.name for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        for name in node.input:
            if name in producer:
                assert region[producer[name]] <= region[node.name]


def test_regions_of_one_kind_are_merged_when_dependencies_allow():
    model = _model([helper.make_node("Celu", ["x"], ["a"], name="h1"),
                    helper.make_node("Celu", ["x"], ["b"], name="h2"),
                    helper.make_node("Add", ["a", "b"], ["y"], name="d1")])
    placement = partition(model, _Declines(["Celu"]), PROFILE)
    assert placement.regions() == [(0, "host", 2), (1, "device", 1)]


def test_unnamed_nodes_get_a_stable_name_and_json_has_every_node():
    model = _model([helper.make_node("Relu", ["x"], ["y"])])
    placement = partition(model, _Declines([]), PROFILE)
    data = placement.to_json()
    assert data["nodes"][0]["node"] == "Relu_0"
    assert data["fallback"] == [] and data["backend"] == "declines"
    assert onnx.checker.check_model(model) is None


def test_split_gives_each_region_its_crossing_values():
    from xpuport.lowering.regions import split

    model = onnx.shape_inference.infer_shapes(_chain())
    placement = partition(model, _Declines(["Celu"]), PROFILE)
    regions = split(model, placement)
    assert [(r.index, r.place) for r in regions] == [(0, "device"), (1, "host"), (2, "device")]
    assert regions[0].inputs == ("x",) and set(regions[0].outputs) == {"a", "d"}
    assert regions[1].inputs == ("a",) and regions[1].outputs == ("b",)
    assert regions[2].inputs == ("b", "x", "d") and regions[2].outputs == ("y",)
    for region in regions:
        onnx.checker.check_model(region.model)
        assert [n.op_type for n in region.model.graph.node]
