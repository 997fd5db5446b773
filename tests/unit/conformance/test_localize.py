"""localize(): the first node whose value leaves the running tolerance is named."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from xpuport.conformance.cases import Case
from xpuport.conformance.engines import Engine, Prepared
from xpuport.conformance.localize import expose_all, localize
from xpuport.conformance.models_suite import model_tolerance


def _model():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Mul", ["r", "two"], ["m"], name="double"),
             helper.make_node("Add", ["m", "one"], ["y"], name="shift")]
    inits = [numpy_helper.from_array(np.array(2, np.float32), "two"),
             numpy_helper.from_array(np.array(1, np.float32), "one")]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "g", [value("x", TensorProto.FLOAT, [4, 3])],
                              [value("y", TensorProto.FLOAT, [4, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


class _Corrupting(Engine):
    """Runs the reference in float32 and adds 0.1 to the values named in `bad`."""

    def __init__(self, bad):
        self.bad = bad

    def prepare(self, cases):
        def runner_for(case):
            model = case.onnx_model()
            names = [o.name for o in model.graph.output]

            def run(feeds):
                outputs = ReferenceEvaluator(model).run(None, feeds)
                return [o + np.float32(0.1) if n in self.bad else o
                        for n, o in zip(names, outputs, strict=True)]

            return run

        return Prepared(runners={c.case_id: runner_for(c) for c in cases})


def _case():
    model = _model()
    feeds = {"x": np.random.default_rng(0).uniform(-1, 1, (4, 3)).astype(np.float32)}
    return Case("tiny.float32", "models", "tiny", "models", "float32",
                model.SerializeToString(), feeds, model_tolerance(model))


def test_expose_all_adds_every_intermediate_value():
    names = [o.name for o in expose_all(_model()).graph.output]
    assert sorted(names) == ["m", "r", "y"]


def test_the_first_diverging_node_is_named():
    message = localize(_case(), _Corrupting({"m", "y"}))
    assert message.startswith("first diverging node: double (Mul)")


def test_a_correct_backend_has_no_diverging_node():
    assert localize(_case(), _Corrupting(set())).startswith("no intermediate value diverges")
