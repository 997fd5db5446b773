"""The host CPU through TVM's llvm target."""

from __future__ import annotations

import platform
from typing import Any

import onnx_ir as ir
import tvm

from xpuport.backends.base import Support, TvmBackend, node_dtypes
from xpuport.backends.tvm_import import importer_support
from xpuport.hw_profiles import HardwareProfile

_PROFILE_BY_MACHINE = {
    "x86_64": "generic/x86-64",
    "amd64": "generic/x86-64",
    "aarch64": "generic/aarch64",
    "arm64": "generic/aarch64",
}


class CpuBackend(TvmBackend):
    name = "cpu"

    def default_profile(self) -> str:
        return _PROFILE_BY_MACHINE.get(platform.machine().lower(), "generic/x86-64")

    def supports(self, node: ir.Node, profile: HardwareProfile) -> Support:
        imported = importer_support(node)
        if not imported.supported:
            return imported
        missing = sorted(node_dtypes(node) - set(profile.dtypes))
        if missing:
            return Support.no(f"dtype {', '.join(missing)} not in profile {profile.name}")
        return Support.yes()

    def target(self, profile: HardwareProfile) -> Any:
        return tvm.target.Target(dict(profile.target))

    def device(self) -> Any:
        return tvm.cpu(0)

    def is_available(self) -> bool:
        return True

    def cache_key(self, profile: HardwareProfile) -> str:
        llvm = tvm.target.codegen.llvm_version_major()
        return f"tvm={tvm.__version__};llvm={llvm};target={self.target(profile)}"
