"""What TVM's GPU backends share: the target from the profile, TVM's default GPU pipeline.

`tvm.compile` is called without a relax_pipeline, so TVM applies its dlight GPU schedules
(thread binding, shared-memory reductions); naming the "default" pipeline would silently build
host code only (TVM-NOTES). Compiling needs the toolchain, never the GPU; running needs both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import onnx_ir as ir
import tvm

from xpuport.backends.base import CompileOptions, Support, TvmBackend
from xpuport.backends.tvm_import import lowering_support
from xpuport.errors import ProfileError
from xpuport.hw_profiles import HardwareProfile
from xpuport.lowering.relu_nan import relu_keeping_nan


class GpuBackend(TvmBackend):
    """A TVM GPU target kind ("cuda", "rocm"); subclasses add libraries and toolchains."""

    target_kind: ClassVar[str]
    default_profile_name: ClassVar[str]

    def default_profile(self) -> str:
        return self.default_profile_name

    def passes(self, profile: HardwareProfile, options: CompileOptions) -> Sequence[Any]:
        return [relu_keeping_nan]

    def supports(self, node: ir.Node, profile: HardwareProfile) -> Support:
        return lowering_support(node, profile)

    def target(self, profile: HardwareProfile) -> Any:
        if profile.target.get("kind") != self.target_kind:
            raise ProfileError(
                f"profile '{profile.name}' targets '{profile.target.get('kind')}', not "
                f"'{self.target_kind}'",
                f"give [target] kind = \"{self.target_kind}\" in hw_profiles/{profile.name}.toml",
            )
        return tvm.target.Target(dict(profile.target), host={"kind": "llvm"})

    def device(self) -> Any:
        return tvm.device(self.target_kind, 0)

    def is_available(self) -> bool:
        """A device of this kind is present and TVM's runtime for it is loaded."""
        try:
            return bool(self.device().exist)
        except RuntimeError:  # TVM reports a missing runtime library or driver this way
            return False


def device_modules(executable: Any, kind: str) -> list[Any]:
    """The device-code modules (of `kind`: "cuda", "hip") imported by a VM executable."""
    found, pending = [], [executable.mod]
    while pending:
        module = pending.pop()
        if module.kind == kind:
            found.append(module)
        pending.extend(module.imports)
    return found
