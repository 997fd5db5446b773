"""NVIDIA GPUs through TVM's CUDA target, with cuBLAS/cuDNN dispatch through torch or cupy.

TVM 0.27 stores CUDA *source* in a library and compiles it when the library is loaded. xpuport
compiles that source with nvcc for the profile's arch at compile time instead, and ships the
fatbins in the artifact: a kernel that does not build for sm_XX fails `compile`, not the first
run, and the GPU host needs no CUDA compiler. At load, a TVM callback hands each module its
prebuilt fatbin, found by the digest of its source.

TVM compiles CUDA with `--use_fast_math`. On an H200 that gave inf where LayerNorm, RMSNorm
and MeanVarianceNormalization are finite: results that silently differ from every other
backend. xpuport's compile callback runs nvcc with IEEE float semantics instead (TVM's NVRTC
path cannot turn fast math off), and is registered before each build: on the GPU host nvcc's
errors surfaced from inside `tvm.compile`, and the ops suite's first ~480 results matched the
fast-math run's exactly, as if each worker's first build had gone through TVM's own callback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import onnx_ir as ir
import tvm
import tvm_ffi

from xpuport.backends import cuda_kernels
from xpuport.backends.base import CompileOptions, Support, built_target, node_dtypes
from xpuport.backends.gpu import GpuBackend, device_modules
from xpuport.errors import CompileError, DeviceUnavailableError
from xpuport.hw_profiles import HardwareProfile
from xpuport.lowering.library import dispatch_pass

# float16 ops whose CUDA TVM writes as h<name>(x), which CUDA's fp16 header does not define:
# nvcc refuses the whole module. Declined, they are computed in float32 (Round) or through exp
# in float64 (Sinh and Cosh: lowering/rules.hyperbolic) instead.
HALF_FUNCTIONS_MISSING = {"Sinh": "hsinh", "Cosh": "hcosh", "Round": "hnearbyint"}
_NO_FAST_MATH_ENV = "TVM_CUDA_NVCC_NO_FAST_MATH"  # read by tvm.support.nvcc on each call
_PREBUILT: dict[str, bytes] = {}  # source digest -> fatbin, from the artifacts loaded so far


class CudaBackend(GpuBackend):
    name = "cuda"
    target_kind = "cuda"
    default_profile_name = "nvidia/h100"

    def passes(self, profile: HardwareProfile, options: CompileOptions) -> Sequence[Any]:
        libraries = cuda_kernels.cuda_libraries() if options.library else []
        return [*([dispatch_pass(libraries)] if libraries else []),
                *super().passes(profile, options)]

    def cache_key(self, profile: HardwareProfile) -> str:
        return (f"tvm={tvm.__version__};nvcc={nvcc_version()};target={self.target(profile)};"
                f"library={','.join(lib.abi for lib in cuda_kernels.cuda_libraries())};"
                "math=ieee")

    def package(self, executable: Any, profile: HardwareProfile) -> dict[str, bytes]:
        sources = [module.inspect_source() for module in device_modules(executable, "cuda")]
        with self.target(profile):  # TVM's nvcc driver reads the current target
            return {f"cuda-{source_digest(code)}.fatbin":
                    compile_fatbin(code, str(profile.target["arch"])) for code in sources}

    def supports(self, node: ir.Node, profile: HardwareProfile) -> Support:
        missing = HALF_FUNCTIONS_MISSING.get(node.op_type)
        if missing and "float16" in node_dtypes(node):
            return Support.no(f"TVM's CUDA for float16 {node.op_type} calls {missing}, which "
                              "CUDA's fp16 header does not define")
        return super().supports(node, profile)

    def before_build(self) -> None:
        _register_loader()  # TVM's own compiles with --use_fast_math

    def prepare_runtime(self, folder: Path | None = None) -> None:
        cuda_kernels.register()
        _register_loader()
        if folder is not None:
            _check_arch(folder)
            for path in folder.glob("cuda-*.fatbin"):
                _PREBUILT[path.stem.removeprefix("cuda-")] = path.read_bytes()


def source_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()[:32]


@cache
def nvcc_version() -> str:
    nvcc = _nvcc()
    output = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True)
    return output.stdout.strip().splitlines()[-1]


def _nvcc() -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise CompileError(
            "compiling for cuda needs nvcc, the CUDA toolkit's compiler, and none is on PATH",
            "install the CUDA toolkit (12 or 13) and put its bin/ on PATH; no GPU is needed",
        )
    return nvcc


def compile_fatbin(code: str, arch: str) -> bytes:
    """nvcc -fatbin for one arch (sm_90: SASS for sm_90 and PTX for later GPUs)."""
    number = arch.removeprefix("sm_")
    gencode = ["-gencode", f"arch=compute_{number},code=[sm_{number},compute_{number}]"]
    try:
        return compile_cuda_ieee(code, "fatbin", gencode)
    except RuntimeError as exc:  # its message is the whole source, then nvcc's output
        output = str(exc).rpartition("Compilation error:")[2].strip()
        raise CompileError(
            f"nvcc failed to build the kernels for {arch}:\n{nvcc_errors(output)}",
            "if nvcc names the arch, check `nvcc --list-gpu-arch`; otherwise TVM wrote CUDA "
            "this nvcc rejects: report it with the model's `xpuport inspect` output",
        ) from exc


def nvcc_errors(output: str, limit: int = 2000) -> str:
    """nvcc's error lines, each with the two lines that show where; warnings are dropped
    (TVM's CUDA preamble yields dozens, which pushed the error out of the message)."""
    lines = output.splitlines()
    found = [index for index, line in enumerate(lines) if ": error" in line]
    shown = "\n".join("\n".join(lines[i:i + 3]) for i in found)
    return (shown or output)[-limit:]


def compile_cuda_ieee(code: str, target_format: str, arch: list[str] | None = None) -> bytes:
    """TVM's nvcc driver without --use_fast_math; `arch` None: the current target's or GPU's."""
    from tvm.support import nvcc

    _nvcc()
    with _without_fast_math():
        return bytes(nvcc.compile_cuda(code, target_format, arch, compiler="nvcc"))


@contextmanager
def _without_fast_math() -> Iterator[None]:
    previous = os.environ.get(_NO_FAST_MATH_ENV)
    os.environ[_NO_FAST_MATH_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[_NO_FAST_MATH_ENV]
        else:
            os.environ[_NO_FAST_MATH_ENV] = previous


@cache
def _register_loader() -> None:
    # Importing it registers TVM's own callback, which ours must replace, not precede.
    import tvm.support.nvcc  # noqa: F401

    def load_kernels(code: str) -> bytes:
        prebuilt = _PREBUILT.get(source_digest(code))
        if prebuilt is not None:
            return prebuilt
        # Code built in this process (conformance runs, tests): compiled here, as `compile` does.
        return compile_cuda_ieee(code, "fatbin")

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", load_kernels, override=True)


def _check_arch(folder: Path) -> None:
    """An sm_90 artifact on an sm_80 GPU fails deep in the driver: say so here instead."""
    built = str((built_target(folder) or {}).get("arch", "")).removeprefix("sm_")
    here = tvm.cuda(0).compute_version.replace(".", "")
    if built and int(here) < int(built):
        raise DeviceUnavailableError(
            f"{folder} holds kernels for sm_{built}; this GPU is sm_{here}",
            f"recompile with a profile for this GPU (--profile nvidia/...), arch sm_{here}",
        )
