"""backends/cpu_prepack.py: constant GEMM operands packed at compile time, once."""

from __future__ import annotations

import numpy as np
import onnx
import tvm
from onnx import TensorProto, helper, numpy_helper

from xpuport.api import resolve_profile
from xpuport.backends.base import CompileOptions
from xpuport.backends.cpu import CpuBackend
from xpuport.backends.cpu_prepack import fold_prepacked, mark_constant_operands
from xpuport.backends.cpu_schedules import default_schedules
from xpuport.lowering.to_relax import to_relax


def _two_matmuls(path, depth: int = 64, columns: int = 48) -> str:
    """y = (x @ w) @ v with w a weight and v an input: one B constant, one not."""
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((depth, columns)).astype(np.float32), "w")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [24, depth]),
              helper.make_tensor_value_info("v", TensorProto.FLOAT, [columns, 8])]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "v"],
                                                                        ["y"])],
        "mm", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [24, 8])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    return str(path)


def _scheduled(path: str) -> tvm.IRModule:
    backend = CpuBackend()
    profile = resolve_profile(backend, None)
    fused = backend.fused_kernels(to_relax(onnx.load(path)), profile, CompileOptions())
    with backend.target(profile):
        return tvm.transform.Sequential([mark_constant_operands(), default_schedules(),
                                         fold_prepacked])(fused)


def test_a_constant_b_is_packed_into_column_blocks_once_and_a_runtime_b_is_not(tmp_path):
    module = _scheduled(_two_matmuls(tmp_path / "m.onnx"))
    text = module["main"].script(show_meta=True)
    calls = [line for line in text.splitlines() if "R.call_tir" in line]
    assert len(calls) == 2
    packed = next(line for line in calls if "_prepacked" in line)
    assert 'metadata["ir.GenericConst"][0]' in packed  # the weight, folded in
    constant = module["main"].body.blocks[0].bindings[0].value.args[1][1]
    assert tuple(int(d) for d in constant.ty.shape) == (3, 64, 16)  # [N / 16, K, 16]
    want = numpy_helper.to_array(onnx.load(tmp_path / "m.onnx").graph.initializer[0])
    np.testing.assert_array_equal(constant.value.numpy(),
                                  want.reshape(64, 3, 16).transpose(1, 0, 2))
    plain = next(line for line in calls if "_prepacked" not in line)
    assert "ir.GenericConst" not in plain and "v" in plain  # the input, packed per call
    kernels = [gv.name_hint for gv, f in module.functions.items()
               if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(kernels) == 2 and not any("weight_prepack" in name for name in kernels)


def test_kernels_that_pack_nothing_lose_the_mark_and_still_build(tmp_path):
    """CumSum's kernel takes its constant axis, and topi writes it as loops in one opaque
    block, which SplitLayoutRewritePreproc refused with an InternalError."""
    w = numpy_helper.from_array(np.ones((16, 16), np.float32), "w")
    axis = helper.make_tensor("axis", TensorProto.INT64, [], [1])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("CumSum", ["h", "axis"], ["y"])], "cumsum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])], [w, axis])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]),
              tmp_path / "m.onnx")
    backend = CpuBackend()
    profile = resolve_profile(backend, None)
    fused = backend.fused_kernels(to_relax(onnx.load(tmp_path / "m.onnx")), profile,
                                  CompileOptions())
    with backend.target(profile):
        marked = tvm.transform.Sequential([mark_constant_operands(), default_schedules()])(fused)
        assert any(_marked(f) and "cumsum" in gv.name_hint for gv, f in marked.functions.items())
        folded = fold_prepacked(marked)
    assert [gv.name_hint for gv, f in folded.functions.items() if _marked(f)] == []
    assert any("prepacked" in gv.name_hint for gv in folded.functions)


def _marked(func) -> bool:
    return isinstance(func, tvm.tirx.PrimFunc) and func.attrs is not None \
        and "layout_free_buffers" in func.attrs
