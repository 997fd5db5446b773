"""Which node of a whole model diverges first: every intermediate value against float64.

The model is rebuilt with every node output as a graph output, run on the same backend and
on the reference, and its values compared in graph (topological) order against the running
sum of the node tolerances, the same budget the whole model is judged by.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import accumulate

import numpy as np
import onnx

from xpuport.conformance.cases import Case, output_dtypes
from xpuport.conformance.engines import Engine
from xpuport.conformance.golden import golden
from xpuport.conformance.models_suite import node_tolerances
from xpuport.conformance.tolerance import Tolerance, measure


def expose_all(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose outputs are every node output that shape inference can type."""
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = {value.name: value for value in inferred.graph.value_info}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {output.name for output in exposed.graph.output}
    for node in exposed.graph.node:
        exposed.graph.output.extend(typed[name] for name in node.output
                                    if name in typed and name not in present)
    return exposed


def localize(case: Case, engine: Engine) -> str:
    """'first diverging node: NAME (OP) ...', or why it could not be found."""
    model = case.onnx_model()
    exposed = expose_all(model)
    probe = replace(case, case_id=f"{case.case_id}#probe", model=exposed.SerializeToString(),
                    golden="float64")
    prepared = engine.prepare([probe])
    if probe.case_id not in prepared.runners:
        why = prepared.errors.get(probe.case_id) or prepared.unsupported.get(probe.case_id)
        return f"could not localize: {why or 'not prepared'}"
    actual = prepared.runners[probe.case_id](dict(case.feeds))
    expected = golden(probe)
    values = dict(zip([o.name for o in exposed.graph.output],
                      zip(actual, expected, output_dtypes(exposed), strict=True), strict=True))
    budgets = list(accumulate(node_tolerances(model, case.dtype)))
    for node, budget in zip(model.graph.node, budgets, strict=True):
        for name in node.output:
            if name not in values:
                continue
            out, ref, dtype = values[name]
            errors_ = measure(np.asarray(out), np.asarray(ref), dtype,
                              Tolerance(budget, budget, "running sum"))
            if not errors_.passed:
                return (f"first diverging node: {node.name or name} ({node.op_type}), output "
                        f"{name}: max abs {errors_.max_abs:.3g} > running tolerance {budget:.3g}")
    return "no intermediate value diverges: the outputs' own comparison failed"
