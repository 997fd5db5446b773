"""backends/cuda.py and backends/rocm.py, compile-only: real device code, built without a GPU."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnx
import pytest
import tvm
import tvm_ffi
from onnx import TensorProto, helper, numpy_helper

import xpuport
from xpuport.backends import cuda, cuda_kernels
from xpuport.backends.base import CompileOptions
from xpuport.backends.cuda import CudaBackend
from xpuport.backends.gpu import device_modules
from xpuport.backends.rocm import RocmBackend, toolchain
from xpuport.errors import CompileError, DeviceUnavailableError, ProfileError
from xpuport.hw_profiles import load_profile
from xpuport.lowering.pipeline import lower
from xpuport.lowering.to_relax import to_relax

FATBIN_MAGIC = bytes.fromhex("50ed55ba")  # 0xBA55ED50, little-endian


def _rocm_toolchain_missing() -> str | None:
    try:
        toolchain()
    except CompileError as exc:
        return str(exc)
    return None


needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
needs_rocm_toolchain = pytest.mark.skipif(
    _rocm_toolchain_missing() is not None,
    reason=f"{_rocm_toolchain_missing()} (`make rocm-toolchain` installs it)")


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> str:
    """Gemm + Relu + Softmax: a library call, an elementwise kernel and a reduction."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Softmax", ["r"], ["y"], axis=-1)]
    inits = [numpy_helper.from_array(rng.standard_normal((32, 16)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "b")]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 32])], inits)
    path = tmp_path_factory.mktemp("gpu") / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@needs_nvcc
@pytest.mark.parametrize(("profile", "arch"), [("nvidia/h100", "sm_90"), ("nvidia/a100", "sm_80")])
def test_cuda_artifact_ships_fatbins_for_the_profile_arch(mlp, tmp_path, profile, arch):
    artifact = xpuport.compile(mlp, "cuda", profile, tmp_path / "out", use_cache=False)
    assert json.loads(artifact.manifest["target"])["arch"] == arch
    fatbins = sorted((tmp_path / "out").glob("cuda-*.fatbin"))
    assert len(fatbins) == 1
    data = fatbins[0].read_bytes()
    assert data.startswith(FATBIN_MAGIC) and b"\x7fELF" in data
    assert f"compute_{arch[3:]}".encode() in data or arch.encode() in data
    assert set(artifact.manifest["files"]) >= {"model.so", fatbins[0].name}


@needs_nvcc
def test_cuda_kernels_are_scheduled_for_threads(mlp):
    profile = load_profile("nvidia/h100")
    executable = lower(to_relax(onnx.load(mlp)), CudaBackend(), profile,
                       CompileOptions(library=False))
    (module,) = device_modules(executable, "cuda")
    source = module.inspect_source()
    assert source.count("__global__") >= 3  # matmul, relu-fused, softmax reductions
    assert "threadIdx.x" in source and "blockIdx.x" in source


@needs_nvcc
def test_cuda_dispatches_matmul_to_the_installed_library(mlp, tmp_path):
    artifact = xpuport.compile(mlp, "cuda", "nvidia/h100", tmp_path / "out", use_cache=False)
    calls = artifact.manifest["library_calls"]
    assert calls in ({"xpuport.cuda.torch.matmul": 1}, {"xpuport.cuda.cupy.matmul": 1}, {})


@needs_nvcc
def test_running_a_cuda_artifact_without_a_gpu_is_a_clear_error(mlp, tmp_path):
    if CudaBackend().is_available():
        pytest.skip("a CUDA GPU is present")
    artifact = xpuport.compile(mlp, "cuda", "nvidia/h100", tmp_path / "out", use_cache=False)
    with pytest.raises(DeviceUnavailableError, match="not present on this machine"):
        artifact.run({"x": np.zeros((4, 16), np.float32)})


_TANH_OVER_X = """extern "C" __global__ void k(float* a, float* b) {
  b[threadIdx.x] = tanhf(a[threadIdx.x]) / a[threadIdx.x]; }"""


@needs_nvcc
def test_cuda_kernels_compile_with_ieee_division_and_tanh():
    """TVM's nvcc flags include --use_fast_math: approximate division and tanh.approx."""
    with tvm.target.Target({"kind": "cuda", "arch": "sm_90"}):
        ptx = cuda.compile_cuda_ieee(_TANH_OVER_X, "ptx", ["-arch", "sm_90"]).decode()
    assert "div.rn.f32" in ptx
    assert "tanh.approx" not in ptx and "div.approx" not in ptx and "div.full" not in ptx
    assert cuda._NO_FAST_MATH_ENV not in os.environ  # set only around the nvcc call


@needs_nvcc
def test_each_build_registers_the_ieee_compile_callback(mlp):
    """With a GPU present TVM compiles device code inside tvm.compile: the callback it finds
    then must be xpuport's, whatever registered one before."""
    tvm_ffi.register_global_func("tvm_callback_cuda_compile", lambda code: b"not ours",
                                 override=True)
    cuda._register_loader.cache_clear()
    lower(to_relax(onnx.load(mlp)), CudaBackend(), load_profile("nvidia/h100"), CompileOptions())
    callback = tvm_ffi.get_global_func("tvm_callback_cuda_compile")
    with tvm.target.Target({"kind": "cuda", "arch": "sm_90"}):
        assert bytes(callback(_TANH_OVER_X)) == cuda.compile_cuda_ieee(_TANH_OVER_X, "fatbin")


def _tf32_flags() -> tuple[bool, bool]:
    import torch

    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_cuda_library_kernels_run_without_tf32_and_restore_the_users_flags(monkeypatch):
    """torch lets cuDNN convolve float32 in TF32 by default; float32 must stay float32."""
    import torch

    seen = []
    monkeypatch.setattr(cuda_kernels, "torch_conv2d", lambda *args: seen.append(_tf32_flags()))
    users = _tf32_flags()
    torch.backends.cuda.matmul.allow_tf32 = True  # as set_float32_matmul_precision("high")
    cuda_kernels.register.cache_clear()
    try:
        cuda_kernels.register()
        tvm_ffi.get_global_func("xpuport.cuda.torch.conv2d")(1, 2)
        assert seen == [(False, False)]
        assert _tf32_flags() == (True, users[1])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = users[0]
        cuda_kernels.register.cache_clear()


def test_tf32_flags_are_restored_when_the_kernel_raises():
    before = _tf32_flags()

    def failing() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        cuda_kernels.in_full_float32(failing)()
    assert _tf32_flags() == before


@needs_nvcc
@pytest.mark.parametrize("op", sorted(cuda.HALF_FUNCTIONS_MISSING))
def test_float16_ops_cuda_has_no_half_function_for_compile_in_float32(op, tmp_path):
    value = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], op,
                              [value("x", TensorProto.FLOAT16, [3, 4])],
                              [value("y", TensorProto.FLOAT16, [3, 4])])
    path = tmp_path / f"{op}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    xpuport.compile(str(path), "cuda", "nvidia/h100", tmp_path / "out", use_cache=False)
    placement = json.loads((tmp_path / "out" / "placement.json").read_text())
    # Round in float32 between casts; Sinh and Cosh through exp in float64 (rules.hyperbolic)
    assert [(d["op"], d["via"]) for d in placement["decomposed"]] == [(op, "xpuport-rule")]
    assert "Cast" in {n["op"] for n in placement["nodes"]}


def test_nvcc_errors_keep_the_error_and_drop_the_warnings():
    output = "\n".join([
        'k.cu(52): warning #177-D: function "__pack_half2" was declared but never referenced',
        "  static inline half __pack_half2(half x);", "  ^",
        'k.cu(127): error: identifier "hsinh" is undefined',
        "  y[i] = hsinh(x[i]);", "         ^",
        *[f'k.cu({n}): warning #177-D: function "h{n}" was declared but never referenced'
          for n in range(200)],
        '1 error detected in the compilation of "k.cu".'])
    shown = cuda.nvcc_errors(output)
    assert shown.startswith('k.cu(127): error: identifier "hsinh" is undefined')
    assert "hsinh(x[i])" in shown and "warning" not in shown


def test_a_profile_of_another_target_kind_is_refused():
    with pytest.raises(ProfileError, match="targets 'rocm', not 'cuda'"):
        CudaBackend().target(load_profile("amd/mi300x"))


def test_no_nvcc_is_a_clear_compile_error(mlp, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(CompileError, match="needs nvcc"):
        xpuport.compile(mlp, "cuda", "nvidia/h100", tmp_path / "out", use_cache=False)
    assert not (tmp_path / "out").exists()


@needs_rocm_toolchain
@pytest.mark.parametrize(("profile", "gfx"), [("amd/mi250x", "gfx90a"), ("amd/mi300x", "gfx942"),
                                              ("hygon/dcu-z100", "gfx906")])
def test_rocm_builds_linked_code_objects(mlp, profile, gfx):
    executable = lower(to_relax(onnx.load(mlp)), RocmBackend(), load_profile(profile),
                       CompileOptions())
    (module,) = device_modules(executable, "hip")
    assembly = module.inspect_source("asm")
    assert f'.amdgcn_target "amdgcn-amd-amdhsa-hcc-{gfx}"' in assembly
    kernels = assembly.count(".amdhsa_kernel ")
    assert kernels >= 2 and kernels == assembly.count(".end_amdhsa_kernel")  # fused: gemm, softmax


@needs_rocm_toolchain
def test_rocm_artifact_embeds_the_code_object(mlp, tmp_path):
    artifact = xpuport.compile(mlp, "rocm", "amd/mi300x", tmp_path / "out", use_cache=False)
    library = (tmp_path / "out" / "model.so").read_bytes()
    assert library.count(b"\x7fELF") >= 2  # the host library and the AMDGPU code object in it
    assert b"amdgcn-amd-amdhsa" in library and b"gfx942" in library
    assert json.loads(artifact.manifest["target"])["mcpu"] == "gfx942"
