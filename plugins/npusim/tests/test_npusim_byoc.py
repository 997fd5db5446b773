"""The BYOC path: patterns, per-entry merging, the codegen, and the refusal of a silent
host lowering inside an NPU region."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import tvm
from npusim_graphs import one_node
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

from xpuport.errors import CompileError
from xpuport_npusim.codegen import byoc_passes

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "xpuport_npusim"
PUBLIC = {"xpuport.backends.base", "xpuport.hw_profiles", "xpuport.errors"}


def _function(model, symbol):
    return from_onnx(model, keep_params_in_input=False)["main"].with_attr("global_symbol",
                                                                          symbol)


def _calls(module):
    found = []
    for function in module.functions.values():
        if isinstance(function, relax.Function):
            relax.analysis.post_order_visit(
                function.body, lambda e: found.append(e) if isinstance(e, relax.Call) else None)
    return found


def test_every_region_becomes_a_call_of_an_npusim_kernel_even_without_main():
    module = tvm.IRModule()
    module["case_0"] = _function(one_node("Relu", {"x": [4]}, [4]), "case_0")
    module["case_1"] = _function(one_node("Exp", {"x": [8]}, [8]), "case_1")
    lowered = tvm.transform.Sequential(byoc_passes("float32"))(module)
    ops = {call.op.name for call in _calls(lowered)}
    assert ops == {"relax.call_dps_packed"}
    symbols = {str(call.args[0].global_symbol) for call in _calls(lowered)}
    assert len(symbols) == 2 and all(s.endswith("_npusim") for s in symbols)
    vm = relax.VirtualMachine(tvm.compile(lowered, target=tvm.target.Target({"kind": "llvm"})),
                              tvm.cpu())
    x = np.array([-1.0, 2.0, -3.0, 4.0], np.float16)
    assert list(vm["case_0"](tvm.runtime.tensor(x)).numpy()) == [0.0, 2.0, 0.0, 4.0]


def test_a_claimed_op_without_an_npusim_kernel_is_refused_not_run_on_the_host():
    from xpuport.backends.base import CompileOptions
    from xpuport.hw_profiles import load_profile
    from xpuport.lowering.pipeline import lower
    from xpuport_npusim.backend import NpuSimBackend

    module = tvm.IRModule({"main": from_onnx(one_node("Floor", {"x": [4]}, [4]))["main"]})
    with pytest.raises(CompileError, match=r"relax\.floor, which no npusim kernel"):
        lower(module, NpuSimBackend(), load_profile("huawei/ascend-910b"), CompileOptions())


def test_the_plugin_uses_only_xpuports_public_contract():
    imported = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    private = {m for m in imported if m.startswith("xpuport.") and m not in PUBLIC}
    assert not private, f"npusim imports private xpuport modules: {sorted(private)}"
    assert {m for m in imported if m.startswith("xpuport.")} <= PUBLIC
