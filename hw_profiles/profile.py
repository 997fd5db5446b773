"""The hardware-profile schema, its invariants, and the loader (with `extends`)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from xpuport.errors import ProfileError

PROFILE_ROOT = Path(__file__).parent
# Extra folders of profiles (vendor-private devices), searched after the built-in ones.
PROFILE_PATH_ENV = "XPUPORT_PROFILE_PATH"
STATUSES = ("runnable", "compile-only", "simulated", "profile-only")
KNOWN_DTYPES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "float8_e4m3fn",
    "float8_e5m2",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint64",
    "uint32",
    "uint16",
    "uint8",
    "bool",
)
# Figures a profile may state; each one stated needs an entry of the same key in [sources].
FIGURES = ("memory_gib", "bandwidth_gbs", "peak_tflops", "matrix_unit", "onchip_buffer_kib")
REQUIRED = ("vendor", "device", "backend", "status", "arch", "dtypes", "target", "sources")


@dataclass(frozen=True)
class MatrixUnit:
    shape: tuple[int, int, int]  # M, N, K of one tile
    input_dtypes: tuple[str, ...]
    accumulator: str


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    vendor: str
    device: str
    backend: str
    status: str
    arch: str
    dtypes: tuple[str, ...]
    target: Mapping[str, Any]
    sources: Mapping[str, str]
    memory_gib: float | None = None
    bandwidth_gbs: float | None = None
    peak_tflops: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    matrix_unit: MatrixUnit | None = None
    onchip_buffer_kib: int | None = None
    extends: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        problems = list(_invariant_problems(self))
        if problems:
            raise ProfileError(
                f"profile '{self.name}' is invalid: " + "; ".join(problems),
                f"edit hw_profiles/{self.name}.toml (schema: hw_profiles/profile.py)",
            )

    def supports_dtype(self, dtype: str) -> bool:
        return dtype in self.dtypes

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vendor": self.vendor,
            "device": self.device,
            "backend": self.backend,
            "status": self.status,
            "arch": self.arch,
            "dtypes": list(self.dtypes),
            "target": dict(self.target),
            "sources": dict(self.sources),
            "figures": {key: _figure_json(getattr(self, key)) for key in self.stated_figures()},
            "extends": self.extends,
        }

    def stated_figures(self) -> tuple[str, ...]:
        return tuple(key for key in FIGURES if getattr(self, key) not in (None, {}))


def _figure_json(value: Any) -> Any:
    if isinstance(value, MatrixUnit):
        return {
            "shape": list(value.shape),
            "input_dtypes": list(value.input_dtypes),
            "accumulator": value.accumulator,
        }
    return dict(value) if isinstance(value, Mapping) else value


def _invariant_problems(profile: HardwareProfile) -> list[str]:
    problems = []
    if profile.status not in STATUSES:
        problems.append(f"status '{profile.status}' is not one of {', '.join(STATUSES)}")
    unknown = [d for d in profile.dtypes if d not in KNOWN_DTYPES]
    if unknown or not profile.dtypes:
        problems.append(f"dtypes must be a non-empty subset of {KNOWN_DTYPES}, got {unknown}")
    if "kind" not in profile.target:
        problems.append("[target] needs a 'kind' (a TVM target kind such as 'llvm')")
    for figure in profile.stated_figures():
        if not str(profile.sources.get(figure, "")).startswith("https://"):
            problems.append(f"figure '{figure}' has no public source (https://...) in [sources]")
    for dtype, tflops in profile.peak_tflops.items():
        if dtype not in profile.dtypes or tflops <= 0:
            problems.append(f"peak_tflops.{dtype} must be positive and for a supported dtype")
    unit = profile.matrix_unit
    if unit and (any(d <= 0 for d in unit.shape) or unit.accumulator not in KNOWN_DTYPES):
        problems.append("matrix_unit needs a positive [M, N, K] shape and a known accumulator")
    return problems


def load_profile(name_or_path: str) -> HardwareProfile:
    """Load a profile by name (`nvidia/h100`) or by the path of a .toml file."""
    return _build(name_or_path, _read_merged(name_or_path, seen=()))


def list_profiles() -> list[HardwareProfile]:
    names = sorted({name for root in _search_roots() for name in _names_under(root)})
    return [load_profile(name) for name in names]


def _search_roots() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(PROFILE_PATH_ENV, "").split(os.pathsep) if p]
    return [PROFILE_ROOT, *extra]


def _names_under(root: Path) -> list[str]:
    return [p.relative_to(root).with_suffix("").as_posix() for p in root.glob("*/*.toml")]


def _resolve(name_or_path: str) -> Path:
    as_path = Path(name_or_path)
    if as_path.suffix == ".toml" and as_path.is_file():
        return as_path
    for root in _search_roots():
        candidate = root / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(n for root in _search_roots() for n in _names_under(root)))
    raise ProfileError(
        f"unknown hardware profile '{name_or_path}'",
        f"use one of: {known} (see `xpuport profiles`), or the path of a .toml file",
    )


def _read_merged(name: str, seen: tuple[str, ...]) -> dict[str, Any]:
    if name in seen:
        raise ProfileError(
            f"profile '{name}' extends itself through {' -> '.join(seen)}",
            "break the cycle in the 'extends' keys",
        )
    path = _resolve(name)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML ({exc})", "fix the TOML syntax") from exc
    parent = data.get("extends")
    if not parent:
        return data
    merged = _read_merged(str(parent), (*seen, name))
    for key, value in data.items():
        both_tables = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = {**merged[key], **value} if both_tables else value
    return merged


def _build(name: str, data: dict[str, Any]) -> HardwareProfile:
    missing = [key for key in REQUIRED if key not in data]
    known = {*REQUIRED, *FIGURES, "extends", "notes"}
    unknown = sorted(set(data) - known)
    if missing or unknown:
        raise ProfileError(
            f"profile '{name}': missing keys {missing}, unknown keys {unknown}",
            f"a profile has {', '.join(REQUIRED)} and may state {', '.join(FIGURES)}",
        )
    unit = data.get("matrix_unit")
    try:
        return HardwareProfile(
            name=Path(name).with_suffix("").as_posix() if name.endswith(".toml") else name,
            dtypes=tuple(data["dtypes"]),
            target=MappingProxyType(dict(data["target"])),
            sources=MappingProxyType(dict(data["sources"])),
            peak_tflops=MappingProxyType(dict(data.get("peak_tflops", {}))),
            matrix_unit=MatrixUnit(
                tuple(unit["shape"]), tuple(unit["input_dtypes"]), unit["accumulator"]
            )
            if unit
            else None,
            **{key: data[key] for key in data if key not in _STRUCTURED},
        )
    except (TypeError, KeyError, ValueError) as exc:
        raise ProfileError(
            f"profile '{name}': a value has the wrong type or shape ({exc})",
            "compare with hw_profiles/generic/x86-64.toml",
        ) from exc


_STRUCTURED = ("dtypes", "target", "sources", "peak_tflops", "matrix_unit")
