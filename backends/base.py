"""The backend contract. A vendor implements this small class; lowering does the rest.

A backend registers under the entry-point group `xpuport.backends`; its entry point names
the Backend subclass (or a module holding exactly one). Discovery checks `api_version`.
An accelerator reached through TVM subclasses TvmBackend; `Backend` alone is the part every
engine shares (the onnxruntime reference backend runs graphs without TVM).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import onnx_ir as ir

from xpuport.errors import XpuportError
from xpuport.hw_profiles import HardwareProfile

API_VERSION = 1


@dataclass(frozen=True)
class Support:
    """Whether a backend takes a node: why not, or (optionally) how it runs it."""

    supported: bool
    reason: str = ""

    @classmethod
    def yes(cls, how: str = "") -> Support:
        """`how` (e.g. "matrix unit: float16 inputs") is shown in the placement."""
        return cls(True, how)

    @classmethod
    def no(cls, reason: str) -> Support:
        return cls(False, reason)


@dataclass(frozen=True)
class CompileOptions:
    """Options that change what is built; they are part of every artifact's identity."""

    opt_level: int = 3
    inline_functions: bool = False
    # Route MatMul/Gemm/Conv to the backend's libraries (BLAS, oneDNN, cuBLAS, cuDNN).
    library: bool = True
    # Give TVM's generated kernels default schedules (parallel, vectorized) where it has none.
    schedules: bool = True
    # Polynomial float32 erf/GELU/exp/tanh/softmax that vectorize (held to the same tolerance).
    fast_math: bool = True
    # A tuning database folder (lowering/tuning.py) whose records replace default schedules.
    tuning_db: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.opt_level <= 3:
            raise XpuportError(
                f"opt_level must be 0..3, got {self.opt_level}", "pass --opt-level 0, 1, 2 or 3"
            )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Backend(ABC):
    """One engine that runs ONNX graphs: what it takes, whether it is here, what keys its code."""

    api_version: ClassVar[int] = API_VERSION
    name: ClassVar[str]

    @abstractmethod
    def default_profile(self) -> str:
        """The profile used when the user names none."""

    @abstractmethod
    def supports(self, node: ir.Node, profile: HardwareProfile) -> Support:
        """May `node` run here, and if not, why (op, dtype, attribute)."""

    @abstractmethod
    def is_available(self) -> bool:
        """Whether this machine can run artifacts for this backend."""

    @abstractmethod
    def cache_key(self, profile: HardwareProfile) -> str:
        """Toolchain and driver versions and arch: anything that changes the generated code."""


class TvmBackend(Backend):
    """One accelerator as TVM sees it. Compiling never needs the device; running does."""

    @abstractmethod
    def target(self, profile: HardwareProfile) -> Any:
        """The tvm.target.Target code generation goes to."""

    def passes(self, profile: HardwareProfile, options: CompileOptions) -> Sequence[Any]:
        """Relax passes run before TVM's default pipeline: BYOC, library dispatch, schedules."""
        return ()

    @abstractmethod
    def device(self) -> Any:
        """The tvm.runtime.Device outputs are computed on."""

    def pipeline(self, profile: HardwareProfile, options: CompileOptions) -> Any | None:
        """TVM's Relax pipeline after `passes`; None: TVM's default one for the target."""
        return None

    # Whether `pipeline` applies CompileOptions.tuning_db (then fused_kernels is defined).
    applies_tuning: ClassVar[bool] = False

    def default_schedules(self) -> Any | None:
        """The pass compile schedules kernels without tuning records with; tune measures it
        against the records. None: TVM's own, not measured."""
        return None

    def fused_kernels(self, module: Any, profile: HardwareProfile,
                      options: CompileOptions) -> Any:
        """The module as tuning sees it: library calls made, ops legalized and fused."""
        raise NotImplementedError(f"backend '{self.name}' applies no tuning records")

    def before_build(self) -> None:
        """Register what TVM calls back while it builds (a device compiler, say): with a device
        present TVM may compile device code inside `tvm.compile`, before any runtime exists."""

    def package(self, executable: Any, profile: HardwareProfile) -> dict[str, bytes]:
        """Files to ship beside a built library in the artifact (prebuilt device code)."""
        return {}

    def prepare_runtime(self, folder: Path | None = None) -> None:
        """Make what built code calls at run time present: library kernels, loaders, and
        the packaged files of the artifact in `folder` (None: code built in this process).

        Called before each VM is created, so heavy runtimes load only when something runs."""

    def prepare_tuning(self, module: Any) -> None:
        """Set this process up to measure `module`'s (fused_kernels') candidates as its
        compiled model will run them: the same libraries, the same threads."""
        self.prepare_runtime()


def built_target(folder: Path) -> dict[str, Any] | None:
    """The TVM target an artifact folder's code was built for, from its manifest (None
    where the folder has none: code built in this process)."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return None
    return dict(json.loads(json.loads(manifest.read_text())["target"]))


def node_dtypes(node: ir.Node) -> set[str]:
    """The numpy names of the dtypes a node reads and writes, where they are known."""
    values = [*node.inputs, *node.outputs]
    return {v.dtype.numpy().name for v in values if v is not None and v.dtype is not None}
