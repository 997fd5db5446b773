"""AMD GPUs (and Hygon DCUs, which run AMD's ISA) through TVM's ROCm target.

TVM links AMDGPU code objects itself: it needs the ROCm device libraries' bitcode and an
ld.lld new enough for the code-object version LLVM emits (v6 from LLVM 19 on). Debian's
`rocm-device-libs` and `lld-22` packages are enough; no ROCm install, no GPU. The linked code
objects are embedded in the artifact's library.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import tvm

from xpuport.backends.gpu import GpuBackend
from xpuport.errors import CompileError
from xpuport.hw_profiles import HardwareProfile

# Where the bitcode lives: a ROCm install, or Debian's rocm-device-libs package.
_ROCM_ROOTS = ("/opt/rocm", "/usr/lib/x86_64-linux-gnu")
_MIN_LLD = 19
_INSTALL = ("apt-get install rocm-device-libs lld-22 (what `make rocm-toolchain` does), "
            "or install ROCm and set ROCM_PATH")


class RocmBackend(GpuBackend):
    name = "rocm"
    target_kind = "rocm"
    default_profile_name = "amd/mi300x"

    def target(self, profile: HardwareProfile) -> object:
        toolchain()  # TVM's own messages ("Cannot find ROCm path") name no fix
        return super().target(profile)

    def cache_key(self, profile: HardwareProfile) -> str:
        root, lld = toolchain()
        return (f"tvm={tvm.__version__};llvm={tvm.target.codegen.llvm_version_major()};"
                f"lld={lld_version(lld)};bitcode={root};target={super().target(profile)}")


@cache
def toolchain() -> tuple[str, str]:
    """(ROCm root with amdgcn/bitcode, ld.lld); sets ROCM_PATH for TVM when it was unset."""
    roots = [os.environ["ROCM_PATH"]] if "ROCM_PATH" in os.environ else list(_ROCM_ROOTS)
    root = next((r for r in roots if (Path(r) / "amdgcn" / "bitcode").is_dir()), None)
    if root is None:
        raise CompileError(f"no ROCm device libraries (amdgcn/bitcode) under {', '.join(roots)}",
                           _INSTALL)
    os.environ.setdefault("ROCM_PATH", root)
    lld = _find_lld()
    return root, lld


def _find_lld() -> str:
    major = tvm.target.codegen.llvm_version_major()
    names = [f"ld.lld-{v}" for v in range(major, _MIN_LLD - 1, -1)] + ["ld.lld"]
    for name in names:
        path = shutil.which(name)
        if path and int(lld_version(path).split(".")[0]) >= _MIN_LLD:
            return path
    raise CompileError(
        f"no ld.lld {_MIN_LLD} or newer on PATH: LLVM {major} emits AMDGPU code objects that "
        "older linkers reject ('unknown abi version')", _INSTALL)


@cache
def lld_version(path: str) -> str:
    output = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"LLD (\d+(\.\d+)*)", output.stdout)
    return found.group(1) if found else "0"
