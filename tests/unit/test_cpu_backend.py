"""backends/cpu.py: which nodes the host CPU takes (and why not), its target and cache key."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import onnx_ir as ir
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper

from xpuport.api import resolve_profile
from xpuport.backends import cpu as cpu_module
from xpuport.backends.base import CompileOptions, node_dtypes
from xpuport.backends.cpu import CpuBackend
from xpuport.backends.tvm_import import importable_ops
from xpuport.errors import DeviceUnavailableError
from xpuport.hw_profiles import load_profile
from xpuport.ir.canonicalize import canonicalize
from xpuport.lowering.to_relax import to_relax

HOST = "generic/x86-64"


def _node(
    op_type: str, elem_type=TensorProto.FLOAT, domain: str = "", out_type=None, **attrs
) -> ir.Node:
    """The single node of a one-node model x -> op -> y, through onnx_ir."""
    node = helper.make_node(op_type, ["x"], ["y"], domain=domain, **attrs)
    graph = helper.make_graph(
        [node],
        "one",
        [helper.make_tensor_value_info("x", elem_type, [2, 3])],
        [helper.make_tensor_value_info("y", out_type or elem_type, [2, 3])],
    )
    opsets = [helper.make_opsetid("", 20)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    (ir_node,) = ir.from_proto(model).graph
    return ir_node


def _missing_op() -> str:
    """An ONNX op TVM's importer lacks; the test needs one to exist."""
    missing = [op for op in ("CumProd", "Celu", "Col2Im") if op not in importable_ops()]
    if not missing:
        pytest.skip("TVM's importer now converts every candidate op")
    return missing[0]


@pytest.fixture(scope="module")
def profile():
    return load_profile(HOST)


def test_importable_ops_is_the_importer_table():
    ops = importable_ops()

    assert {"Relu", "MatMul", "Conv", "Gemm"} <= ops
    assert "NoSuchOp" not in ops


def test_supports_relu_float32(profile):
    support = CpuBackend().supports(_node("Relu"), profile)

    assert support.supported
    assert support.reason == ""


def test_supports_relu_float16_on_the_full_profile(profile):
    assert CpuBackend().supports(_node("Relu", TensorProto.FLOAT16), profile).supported


def test_declines_an_op_tvm_lacks(profile):
    op = _missing_op()

    support = CpuBackend().supports(_node(op), profile)

    assert not support.supported
    assert op in support.reason
    assert "converter" in support.reason


def test_declines_a_custom_domain_op(profile):
    support = CpuBackend().supports(_node("Relu", domain="com.vendor"), profile)

    assert not support.supported
    assert "com.vendor" in support.reason


def test_declines_a_dtype_the_profile_lacks(profile):
    narrow = dataclasses.replace(profile, dtypes=("float32",))
    node = _node("Relu", TensorProto.FLOAT16)
    assert node_dtypes(node) == {"float16"}

    support = CpuBackend().supports(node, narrow)

    assert not support.supported
    assert "float16" in support.reason
    assert narrow.name in support.reason
    assert CpuBackend().supports(_node("Relu"), narrow).supported


def test_node_dtypes_reads_inputs_and_outputs():
    node = _node("Cast", TensorProto.FLOAT, out_type=TensorProto.INT8, to=TensorProto.INT8)
    assert node_dtypes(node) == {"float32", "int8"}


def test_target_is_llvm_for_the_profile(profile):
    target = CpuBackend().target(profile)

    assert isinstance(target, tvm.target.Target)
    assert target.kind.name == "llvm"
    assert str(target.attrs["mtriple"]) == profile.target["mtriple"]


def test_cache_key_names_the_toolchain(profile):
    key = CpuBackend().cache_key(profile)

    assert f"tvm={tvm.__version__}" in key
    assert "llvm=" in key
    assert "x86_64-unknown-linux-gnu" in key
    assert key == CpuBackend().cache_key(profile)


def test_cache_key_depends_on_the_profile(profile):
    aarch64 = load_profile("generic/aarch64")

    assert CpuBackend().cache_key(aarch64) != CpuBackend().cache_key(profile)


def test_default_profile_is_a_cpu_profile():
    profile = load_profile(CpuBackend().default_profile())

    assert profile.backend == "cpu"


def test_cpu_is_always_available():
    backend = CpuBackend()

    assert backend.is_available()
    assert backend.device().dlpack_device_type() == tvm.cpu(0).dlpack_device_type()


@pytest.mark.parametrize(("features", "expected"), [
    ({}, "generic/x86-64"),
    ({"X86_V3": True}, "generic/x86-64-v3"),
    ({"X86_V3": True, "X86_V4": True}, "generic/x86-64-v4"),
])
def test_default_profile_is_the_host_x86_level(monkeypatch, features, expected):
    monkeypatch.setattr(cpu_module.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu_module, "_host_cpu_features", lambda: features)

    assert CpuBackend().default_profile() == expected
    assert load_profile(expected).target.get("mcpu", "x86-64") == expected.split("/")[1]


def test_code_for_a_level_the_host_lacks_is_refused_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_module, "_host_cpu_features", lambda: {"X86_V3": True})
    target = dict(load_profile("generic/x86-64-v4").target)

    with pytest.raises(DeviceUnavailableError) as info:
        cpu_module.check_host_runs(target, str(tmp_path))
    assert "x86-64-v4" in str(info.value) and str(tmp_path) in str(info.value)
    assert "generic/x86-64" in info.value.fix
    cpu_module.check_host_runs(dict(load_profile("generic/x86-64-v3").target), "here")


@pytest.mark.parametrize(("machine", "cpus", "expected"), [
    ("x86_64", 2, "1"), ("x86_64", 16, "8"), ("aarch64", 4, "4"), ("x86_64", 1, "1"),
])
def test_the_runtime_states_tvms_own_thread_count(monkeypatch, machine, cpus, expected):
    """TVM would otherwise ask glibc for the CPU count (a sysfs read) on every parallel
    kernel it launches."""
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_module.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu_module.os, "cpu_count", lambda: cpus)

    CpuBackend().prepare_runtime()

    assert cpu_module.os.environ["TVM_NUM_THREADS"] == expected


@pytest.mark.parametrize("variable", ["TVM_NUM_THREADS", "OMP_NUM_THREADS"])
def test_a_thread_count_the_user_set_is_kept(monkeypatch, variable):
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv(variable, "3")

    CpuBackend().prepare_runtime()

    assert cpu_module.os.environ.get("TVM_NUM_THREADS", "3") == "3"
    assert cpu_module.os.environ[variable] == "3"


@pytest.mark.parametrize(("pools", "every_core"), [([], True), (["numpy"], False), (None, False)])
def test_a_model_without_library_thread_pools_gives_tvm_every_core(tmp_path, monkeypatch, pools,
                                                                    every_core):
    """Only where no other pool spins beside TVM's: its second thread made library models
    slower on the 2-core host. An artifact from before the manifest said (None) keeps TVM's
    own count."""
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_module.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpu_module, "_usable_cores", lambda: 2)
    manifest = {"target": json.dumps({"kind": "llvm"}),
                **({"host_thread_pools": pools} if pools is not None else {})}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))

    CpuBackend().prepare_runtime(tmp_path)

    assert cpu_module.os.environ["TVM_NUM_THREADS"] == ("2" if every_core else "1")


def test_tvms_pool_is_made_with_every_core_before_a_count_is_stated(monkeypatch):
    """TVM sizes its pool once, at its first parallel launch: made while the count was 1,
    a later count of 2 would still run on one thread. (Its own process: the pool is made
    once per thread.)"""
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    script = ("import os, tvm; from xpuport.backends import cpu; cpu.settle_tvm_threads(); "
              "print(tvm.get_global_func('runtime.NumThreads')(), os.environ['TVM_NUM_THREADS'],"
              " cpu._usable_cores(), cpu.os.cpu_count())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    pool, stated, cores, cpus = (int(v) for v in out)
    assert pool == cores
    assert stated == max(1, cpus // 2 if cpu_module.platform.machine() == "x86_64" else cpus)


def _matmul_module(rows: int, depth: int):
    """x [rows, depth] @ a constant [depth, 256], as tuning sees it (fused kernels)."""
    weight = numpy_helper.from_array(np.ones((depth, 256), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, depth])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, 256])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    backend = CpuBackend()
    return backend.fused_kernels(to_relax(canonicalize(model)),
                                 resolve_profile(backend, None), CompileOptions())


@pytest.mark.parametrize(("on_library", "every_core"), [(False, True), (True, False)])
def test_tuning_measures_on_the_threads_the_model_will_run_on(
        monkeypatch, request, on_library, every_core):
    """A model whose GEMMs TVM computes runs on every core, so its candidates are timed
    there; one with OpenBLAS's pool beside TVM keeps TVM's own count."""
    if on_library:
        request.getfixturevalue("gemms_on_library")
    module = _matmul_module(64, 256)  # 4.2 M multiply-adds: OpenBLAS would thread it
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_module.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpu_module, "_usable_cores", lambda: 2)

    CpuBackend().prepare_tuning(module)

    assert cpu_module.os.environ["TVM_NUM_THREADS"] == ("2" if every_core else "1")
