"""The npusim backend: xpuport's contract, implemented by a plugin from outside xpuport."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx_ir as ir
import tvm

from xpuport.backends.base import CompileOptions, Support, TvmBackend
from xpuport.errors import ProfileError
from xpuport.hw_profiles import HardwareProfile
from xpuport_npusim import __version__
from xpuport_npusim.claims import claim
from xpuport_npusim.codegen import byoc_passes


class NpuSimBackend(TvmBackend):
    """An Ascend-like NPU (matrix, vector and data-movement units), simulated on the CPU."""

    name = "npusim"

    def default_profile(self) -> str:
        return "huawei/ascend-910b"

    def supports(self, node: ir.Node, profile: HardwareProfile) -> Support:
        check_profile(profile)
        return claim(node, profile)

    def target(self, profile: HardwareProfile) -> Any:
        # The simulator runs on the host: TVM's own code and the NPU kernels are host code.
        return tvm.target.Target(dict(profile.target))

    def passes(self, profile: HardwareProfile, options: CompileOptions) -> Sequence[Any]:
        unit = check_profile(profile).matrix_unit
        return byoc_passes(unit.accumulator if unit else "float32")

    def device(self) -> Any:
        return tvm.cpu(0)

    def is_available(self) -> bool:
        return True  # a simulator: every machine that compiles can run it

    def cache_key(self, profile: HardwareProfile) -> str:
        llvm = tvm.target.codegen.llvm_version_major()
        unit = profile.matrix_unit
        return (f"npusim={__version__};tvm={tvm.__version__};llvm={llvm};"
                f"matrix_unit={unit};buffer_kib={profile.onchip_buffer_kib}")


def check_profile(profile: HardwareProfile) -> HardwareProfile:
    """An npusim profile must describe the simulated device: a host target to run it on."""
    if profile.target.get("kind") != "llvm":
        raise ProfileError(
            f"profile {profile.name} targets '{profile.target.get('kind')}'; npusim simulates "
            "on the host and needs [target] kind = \"llvm\"",
            f"set [target] kind = \"llvm\" in {profile.name}, or pick an npusim profile "
            "(see `xpuport profiles`)")
    return profile
