"""The host CPU through TVM's llvm target."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx_ir as ir
import tvm
from tvm import relax

from xpuport.backends import host_kernels
from xpuport.backends.base import CompileOptions, Support, TvmBackend
from xpuport.backends.cpu_fast_math import fast_math
from xpuport.backends.cpu_schedules import cpu_pipeline_with_schedules, fusion_passes
from xpuport.backends.tvm_import import lowering_support
from xpuport.hw_profiles import HardwareProfile
from xpuport.lowering.library import dispatch_pass

_PROFILE_BY_MACHINE = {
    "x86_64": "generic/x86-64",
    "amd64": "generic/x86-64",
    "aarch64": "generic/aarch64",
    "arm64": "generic/aarch64",
}


class CpuBackend(TvmBackend):
    name = "cpu"
    applies_tuning = True

    def default_profile(self) -> str:
        return _PROFILE_BY_MACHINE.get(platform.machine().lower(), "generic/x86-64")

    def supports(self, node: ir.Node, profile: HardwareProfile) -> Support:
        return lowering_support(node, profile)

    def target(self, profile: HardwareProfile) -> Any:
        return tvm.target.Target(dict(profile.target))

    def passes(self, profile: HardwareProfile, options: CompileOptions) -> Sequence[Any]:
        library = [dispatch_pass(host_kernels.host_libraries())] if options.library else []
        return [*library, *([fast_math] if options.fast_math else [])]

    def pipeline(self, profile: HardwareProfile, options: CompileOptions) -> Any | None:
        records = ([relax.transform.MetaScheduleApplyDatabase(options.tuning_db)]
                   if options.tuning_db else [])
        if not options.schedules and not records:
            return None
        return cpu_pipeline_with_schedules(self.target(profile), records, options.schedules)

    def fused_kernels(self, module: Any, profile: HardwareProfile,
                      options: CompileOptions) -> Any:
        target = self.target(profile)
        with target, tvm.transform.PassContext(opt_level=options.opt_level):
            passes = [*self.passes(profile, options), *fusion_passes(target)]
            return tvm.transform.Sequential(passes)(module)

    def device(self) -> Any:
        return tvm.cpu(0)

    def prepare_runtime(self, folder: Path | None = None) -> None:
        host_kernels.register()

    def is_available(self) -> bool:
        return True

    def cache_key(self, profile: HardwareProfile) -> str:
        llvm = tvm.target.codegen.llvm_version_major()
        libraries = ",".join(lib.abi for lib in host_kernels.host_libraries())
        return f"tvm={tvm.__version__};llvm={llvm};target={self.target(profile)};lib={libraries}"
