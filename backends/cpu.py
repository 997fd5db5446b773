"""The host CPU through TVM's llvm target."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx_ir as ir
import tvm

from xpuport.backends import host_kernels
from xpuport.backends.base import (
    CompileOptions,
    Support,
    TvmBackend,
    built_target,
    node_dtypes,
)
from xpuport.backends.cpu_fast_math import fast_math
from xpuport.backends.cpu_schedules import (
    cpu_pipeline_with_schedules,
    default_schedules,
    fusion_passes,
)
from xpuport.backends.tvm_import import lowering_support
from xpuport.errors import DeviceUnavailableError
from xpuport.hw_profiles import HardwareProfile
from xpuport.lowering.channels_last import channels_last_pass
from xpuport.lowering.column_blocks import column_blocks_pass
from xpuport.lowering.conv_epilogue import EPILOGUE_OP, conv_epilogue_pass
from xpuport.lowering.library import (
    dispatch_pass,
    has_op,
    largest_matmul_macs,
    note_thread_pools,
)
from xpuport.lowering.linear_epilogue import LINEAR_OP, linear_pass
from xpuport.lowering.relu_nan import relu_keeping_nan
from xpuport.lowering.tuning import note_tuned_kernels
from xpuport.lowering.tuning_apply import apply_records
from xpuport.lowering.tvm_kernels import (
    convs_stay_in_tvm,
    gemms_stay_in_tvm,
    hwio_weights_pass,
)

_PROFILE_BY_MACHINE = {
    "x86_64": "generic/x86-64",
    "amd64": "generic/x86-64",
    "aarch64": "generic/aarch64",
    "arm64": "generic/aarch64",
}
# The psABI's x86-64 levels, highest first, as numpy's CPU dispatch names them.
_X86_LEVELS = {"x86-64-v4": "X86_V4", "x86-64-v3": "X86_V3"}


def host_x86_level() -> str | None:
    """The highest x86-64 microarchitecture level (above the baseline) this host has."""
    features = _host_cpu_features()
    return next((level for level, name in _X86_LEVELS.items() if features.get(name)), None)


def _host_cpu_features() -> dict[str, bool]:
    # numpy detects these at import for its own SIMD dispatch, on every OS.
    from numpy._core._multiarray_umath import __cpu_features__  # type: ignore[import-not-found]

    return dict(__cpu_features__)


def check_host_runs(target: dict[str, object], where: str) -> None:
    """Refuse code built for an x86-64 level this host lacks: it would die on SIGILL."""
    level = str(target.get("mcpu", ""))
    if level in _X86_LEVELS and not _host_cpu_features().get(_X86_LEVELS[level]):
        raise DeviceUnavailableError(
            f"{where} was built for {level}, which this CPU does not implement",
            "recompile it here (the default profile matches this host), or with "
            "--profile generic/x86-64 for any x86-64 host",
        )


# The count settle_tvm_threads last stated, to tell it from one the user set.
_stated_threads: str | None = None


def settle_tvm_threads(every_core: bool = False) -> None:
    """State TVM's thread count in TVM_NUM_THREADS, where the user set neither it nor
    OMP_NUM_THREADS: every core for a model none of whose library kernels starts a thread
    pool (`every_core`), else the count TVM would choose itself.

    TVM chooses on every parallel kernel's launch: TVM_NUM_THREADS, else OMP_NUM_THREADS,
    else half of std::thread::hardware_concurrency() on x86 (it takes half the CPUs for
    hyper-threads), which glibc answers by reading sysfs. That read cost 10-14 us per
    parallel kernel on the 2-core AVX2 host, where TVM then runs the kernel on 1 thread:
    a 16,384-element elementwise kernel took 11-12 us instead of 2.3. Stated, the same
    count costs a getenv. On that host a second TVM thread made models with library calls
    slower (it contends with the libraries' spinning pools: the small CNN at batch 8 on
    oneDNN 1.33x -> 1.88x onnxruntime), and a model without them faster (the same CNN
    with TVM's convolutions, 1.83x -> 0.90x).

    TVM sizes its pool (one per calling thread) at its first parallel launch and never
    again, and runs a kernel serially while the count is 1: so the pool is made here, once,
    with every core, and the count stated per model only decides whether it is used."""
    global _stated_threads
    current = os.environ.get("TVM_NUM_THREADS")
    if "OMP_NUM_THREADS" in os.environ or (current is not None and current != _stated_threads):
        return
    cores = _usable_cores()
    if _stated_threads is None:
        os.environ["TVM_NUM_THREADS"] = str(cores)
        tvm.get_global_func("runtime.NumThreads")()  # makes this thread's pool
    cpus = os.cpu_count() or 1
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    tvms_own = max(1, cpus // 2 if x86 else cpus)
    _stated_threads = str(cores if every_core else tvms_own)
    os.environ["TVM_NUM_THREADS"] = _stated_threads


def _usable_cores() -> int:
    """The CPUs this process may run on (its affinity, where the OS has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def starts_no_thread_pool(folder: Path) -> bool:
    """Whether the artifact in `folder` says none of its library kernels or host regions
    starts a host thread pool (an artifact from before xpuport said so does not)."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return False
    pools: object = json.loads(manifest.read_text()).get("host_thread_pools")
    return pools == []


# Library ops made by fusing a chain of Relax ops (the others replace one op each).
_FUSIONS = {EPILOGUE_OP: conv_epilogue_pass, LINEAR_OP: linear_pass}


def host_dispatch(large_gemms_on_onednn: bool) -> Any:
    """A module pass sending conv and GEMM epilogues, then the other heavy ops, to the host's
    libraries (the GEMMs' chosen for the module: host_kernels.host_libraries), with the
    convolutions first moved to NHWC where the conv library or TVM takes that. A model
    whose convolutions are all small keeps them in TVM, and its GEMMs where TVM takes them
    all (lowering/tvm_kernels.py). Where the library takes them, large GEMMs go to oneDNN
    only where `large_gemms_on_onednn` (see onednn_gemms_pay). The thread pools the library
    kernels start are noted for the manifest (settle_tvm_threads)."""

    @tvm.transform.module_pass(opt_level=0, name="xpuport.HostDispatch")  # type: ignore[untyped-decorator]
    def dispatch(module: Any, _context: Any) -> Any:
        convs = has_op(module, "relax.nn.conv2d")
        nhwc = channels_last_pass()(module) if convs else module
        tvm_convs = convs_stay_in_tvm(nhwc)
        library_convs = convs and not tvm_convs
        tvm_gemms = not library_convs and gemms_stay_in_tvm(module)
        large_on_onednn = not tvm_gemms and large_gemms_on_onednn and \
            largest_matmul_macs(module) >= host_kernels.ONEDNN_GEMM_MACS
        libraries = host_kernels.host_libraries(library_convs or large_on_onednn,
                                                convolutions=not tvm_convs,
                                                gemms=not tvm_gemms)
        if tvm_convs or any(lib.layout == "NHWC" for lib in libraries):
            module = nhwc
        fusions = [_FUSIONS[lib.op](lib) for lib in libraries if lib.op in _FUSIONS]
        dispatched = tvm.transform.Sequential([*fusions, dispatch_pass(libraries),
                                               hwio_weights_pass()])(module)
        note_thread_pools(host_kernels.thread_pools(dispatched))
        return dispatched

    return dispatch


def onednn_gemms_pay(profile: HardwareProfile) -> bool:
    """Whether a model's large GEMMs run faster on oneDNN than on numpy's OpenBLAS: on an
    AVX-512 host (x86-64-v4) yes, the d768 encoder 25.0 -> 23.3 ms; on an AVX2 one (an
    x86-64-v3 AMD EPYC) no, 36.7 ms on OpenBLAS against 54.2 ms on oneDNN, whose linear
    layers reached 115 GFLOP/s alone but 70 inside the model. Only for GEMMs TVM cannot take:
    TVM's own (backends/cpu_gemm_schedule.py) beat both on a 2-core Sapphire Rapids, the
    d768 encoder at batch 1 13.3 ms against 20.2 on oneDNN, onnxruntime 14.2-14.7."""
    return str(profile.target.get("mcpu", "")) == "x86-64-v4"


class CpuBackend(TvmBackend):
    name = "cpu"
    applies_tuning = True

    def default_profile(self) -> str:
        """The host's own ISA: the baseline profile leaves AVX2/AVX-512 and FMA unused
        (the d256 encoder ran 5.1 ms on SSE2 code, 3.6 ms on x86-64-v4)."""
        base = _PROFILE_BY_MACHINE.get(platform.machine().lower(), "generic/x86-64")
        level = host_x86_level() if base == "generic/x86-64" else None
        return f"generic/{level}" if level else base

    def supports(self, node: ir.Node, profile: HardwareProfile) -> Support:
        if node.op_type in ("Sinh", "Cosh") and node_dtypes(node) & {"float16", "float32"}:
            return Support.no(f"TVM 0.27 builds {node.op_type} for no vectorized x86 level "
                              "(unknown intrinsic); computed through exp in float64")
        return lowering_support(node, profile)

    def target(self, profile: HardwareProfile) -> Any:
        return tvm.target.Target(dict(profile.target))

    def passes(self, profile: HardwareProfile, options: CompileOptions) -> Sequence[Any]:
        """Without library dispatch the convolutions still move to NHWC with HWIO weights,
        the layout DirectConv schedules: left NCHW, TVM ran them unscheduled (the small CNN
        7.47 ms against 0.20 in NHWC, ResNet-50 1,536 ms against 78; onnxruntime 0.23, 29)."""
        library = [host_dispatch(onednn_gemms_pay(profile))] if options.library else \
            [channels_last_pass(), hwio_weights_pass()]
        return [column_blocks_pass(), *library, relu_keeping_nan,
                *([fast_math] if options.fast_math else [])]

    def pipeline(self, profile: HardwareProfile, options: CompileOptions) -> Any | None:
        defaults = self.default_schedules() if options.schedules else None
        records = ([apply_records(options.tuning_db, defaults, self.target(profile)),
                    note_tuned_kernels()] if options.tuning_db else [])
        if not options.schedules and not records:
            return None
        return cpu_pipeline_with_schedules(self.target(profile), records, options.schedules)

    def default_schedules(self) -> Any | None:
        return default_schedules()

    def fused_kernels(self, module: Any, profile: HardwareProfile,
                      options: CompileOptions) -> Any:
        target = self.target(profile)
        with target, tvm.transform.PassContext(opt_level=options.opt_level):
            passes = [*self.passes(profile, options), *fusion_passes(target)]
            return tvm.transform.Sequential(passes)(module)

    def device(self) -> Any:
        return tvm.cpu(0)

    def prepare_runtime(self, folder: Path | None = None) -> None:
        target = built_target(folder) if folder is not None else None
        if target is not None:
            check_host_runs(target, str(folder))
        settle_tvm_threads(every_core=folder is not None and starts_no_thread_pool(folder))
        host_kernels.register()

    def prepare_tuning(self, module: Any) -> None:
        """Candidates measured on the threads the compiled model will have: every core where
        none of its library kernels starts a pool (the runner's workers inherit the count).
        On TVM's own count, one thread on the 2-core host, tuning timed both candidates and
        default schedules of all-TVM models single-threaded, models that run on two."""
        settle_tvm_threads(every_core=not host_kernels.thread_pools(module))
        host_kernels.register()

    def is_available(self) -> bool:
        return True

    def cache_key(self, profile: HardwareProfile) -> str:
        llvm = tvm.target.codegen.llvm_version_major()
        choices = {*host_kernels.host_libraries(False), *host_kernels.host_libraries(True)}
        libraries = ",".join(sorted(lib.abi for lib in choices))
        return f"tvm={tvm.__version__};llvm={llvm};target={self.target(profile)};lib={libraries}"
