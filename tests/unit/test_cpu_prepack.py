"""backends/cpu_prepack.py: constant GEMM operands packed at compile time, once."""

from __future__ import annotations

import numpy as np
import onnx
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

from xpuport.api import resolve_profile
from xpuport.backends.base import CompileOptions
from xpuport.backends.cpu import CpuBackend
from xpuport.backends.cpu_prepack import fold_prepacked
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


def _fused(path: str) -> tuple[tvm.IRModule, tvm.target.Target]:
    """The model's kernels as tuning sees them: constant operands already marked."""
    backend = CpuBackend()
    profile = resolve_profile(backend, None)
    return (backend.fused_kernels(to_relax(onnx.load(path)), profile, CompileOptions()),
            backend.target(profile))


def _scheduled(path: str) -> tvm.IRModule:
    fused, target = _fused(path)
    with target:
        return tvm.transform.Sequential([default_schedules(), fold_prepacked])(fused)


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


def test_a_module_with_a_kernel_split_cannot_take_still_builds(tmp_path):
    """topi writes CumSum as loops in one opaque block, which SplitLayoutRewritePreproc
    refused with an InternalError when relax's AttachAttrLayoutFreeBuffers had marked it
    (with an empty list); the split now sees only the kernels that pack."""
    w = numpy_helper.from_array(np.ones((16, 16), np.float32), "w")
    axis = helper.make_tensor("axis", TensorProto.INT64, [], [1])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("CumSum", ["h", "axis"], ["y"])], "cumsum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])], [w, axis])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]),
              tmp_path / "m.onnx")
    fused, target = _fused(str(tmp_path / "m.onnx"))
    with target:
        folded = fold_prepacked(default_schedules()(fused))
    assert any("prepacked" in gv.name_hint for gv in folded.functions)
    x = np.arange(64, dtype=np.float32).reshape(4, 16)
    vm = relax.VirtualMachine(tvm.compile(folded, target=target), tvm.cpu())
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(),
                               np.cumsum(x @ np.ones((16, 16), np.float32), axis=1), rtol=1e-6)


def test_constant_operands_are_marked_before_tuning_sees_the_kernels(tmp_path):
    """Tuning's tasks carry the mark, so MetaSchedule's candidates and the default schedule
    it is timed against both read the packed weight, as the compiled model will."""
    fused, _ = _fused(_two_matmuls(tmp_path / "m.onnx"))
    kernels = {gv.name_hint: f for gv, f in fused.functions.items()
               if isinstance(f, tvm.tirx.PrimFunc)}
    assert sorted(kernels) == ["matmul", "matmul1"]  # named as before the marking
    assert [int(i) for i in kernels["matmul"].attrs["layout_free_buffers"]] == [1]
    assert "layout_free_buffers" not in kernels["matmul1"].attrs  # its workload unchanged


def test_a_kernel_called_with_a_constant_and_with_an_input_is_not_marked(tmp_path):
    """One kernel serves both calls (same shapes): packing at compile time would leave the
    call with the input's B reading a layout it was never given."""
    w = numpy_helper.from_array(np.ones((64, 48), np.float32), "w")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [24, 64]),
              helper.make_tensor_value_info("v", TensorProto.FLOAT, [64, 48])]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["a"]),
         helper.make_node("MatMul", ["x", "v"], ["b"])], "shared", inputs,
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [24, 48]) for name in "ab"], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]),
              tmp_path / "m.onnx")
    fused, target = _fused(str(tmp_path / "m.onnx"))
    kernels = [f for f in fused.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(kernels) == 1 and "layout_free_buffers" not in kernels[0].attrs
    with target:
        folded = fold_prepacked(default_schedules()(fused))
    x = np.random.default_rng(1).standard_normal((24, 64)).astype(np.float32)
    v = np.random.default_rng(2).standard_normal((64, 48)).astype(np.float32)
    vm = relax.VirtualMachine(tvm.compile(folded, target=target), tvm.cpu())
    a, b = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(v))
    np.testing.assert_allclose(a.numpy(), x @ np.ones((64, 48), np.float32), rtol=1e-5)
    np.testing.assert_allclose(b.numpy(), x @ v, rtol=1e-5, atol=1e-5)
