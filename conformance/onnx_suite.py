"""The official ONNX node tests as cases, generated from the installed onnx package.

The onnx wheel ships the test generators (`onnx.backend.test.case.node`), not their data; each
generator builds its model and expected outputs here. Tolerances are the ONNX runner's own
(rtol/atol of each test case, 1e-3/1e-7 unless the case says otherwise).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case.node import collect_testcases
from onnx.backend.test.case.test_case import TestCase

from xpuport.conformance.cases import Case, output_dtypes
from xpuport.conformance.tolerance import Tolerance

_EXPANDED = re.compile(r"_expanded(_ver\d+)?$")


def onnx_cases(names: set[str] | None = None) -> Iterator[Case]:
    """Every node test (or those whose op or test name is in `names`), one case per data set."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators divide by zero on purpose
        tests = collect_testcases(None)
    tests = [t for t in tests if t.model is not None and t.data_sets]
    ops = {t.name: _op(_model(t)) for t in tests if not _EXPANDED.search(t.name)}
    for test in tests:
        op = ops.get(_EXPANDED.sub("", test.name)) or _op(_model(test))
        if names and op not in names and test.name not in names:
            continue
        for index, (inputs, outputs) in enumerate(test.data_sets or ()):
            case_id = test.name if index == 0 else f"{test.name}#{index}"
            yield _case(test, case_id, op, list(inputs), list(outputs))


def _model(test: TestCase) -> onnx.ModelProto:
    assert test.model is not None, "filtered above"
    return test.model


def _op(model: onnx.ModelProto) -> str:
    nodes = model.graph.node
    return nodes[0].op_type if len(nodes) == 1 else (nodes[-1].op_type if nodes else "?")


def _case(test: TestCase, case_id: str, op: str, inputs: list[object],
          outputs: list[object]) -> Case:
    model = _model(test)
    graph_inputs = [i.name for i in model.graph.input]
    inputs, outputs = [_tensor(v) for v in inputs], [_tensor(v) for v in outputs]
    declined = ""
    if not all(isinstance(v, np.ndarray) for v in [*inputs, *outputs]):
        declined = "sequence, optional or map values: xpuport passes tensors only"
    feeds = {name: value for name, value in zip(graph_inputs, inputs, strict=False)
             if isinstance(value, np.ndarray)}
    expected = tuple(v for v in outputs if isinstance(v, np.ndarray))
    tolerance = Tolerance(float(test.rtol), float(test.atol), "ONNX backend test runner")
    return Case(case_id, "onnx", op, "onnx", _dtype(model, feeds), model.SerializeToString(),
                feeds, tolerance, "given", expected, declined)


def _tensor(value: object) -> object:
    """numpy scalars and TensorProtos (float8, int4...) as arrays; sequences stay as they are."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, np.generic):
        return np.asarray(value)
    return value


def _dtype(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> str:
    names = {str(v.dtype) for v in feeds.values()}
    if not names:
        names = set(output_dtypes(model)) if model.graph.output else {"none"}
    return names.pop() if len(names) == 1 else "mixed"
