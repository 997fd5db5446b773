"""The artifact directory: library, canonical graph, manifest with digests; load and run."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import numpy as np
import tvm
from tvm import relax

import xpuport
from xpuport.backends.base import TvmBackend
from xpuport.errors import ArtifactError, DeviceUnavailableError
from xpuport.ir.inspect import TensorSpec
from xpuport.lowering.executor import (
    RegionExecutor,
    flatten_values,
    to_device_tensor,
    to_host_array,
)
from xpuport.lowering.library import missing_functions
from xpuport.lowering.signature import check_inputs

FORMAT_VERSION = 2  # 2: placement.json
MANIFEST = "manifest.json"
LIBRARY = "model.so"
GRAPH = "graph.onnx"
PLACEMENT = "placement.json"  # every node: its region, device or host, and why


def environment_versions() -> dict[str, str]:
    """Versions an artifact is bound to: a mismatch on load is refused."""
    return {
        "xpuport": xpuport.__version__,
        "tvm": tvm.__version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """A scratch folder beside `out_dir`, removed unless it was installed as `out_dir`."""
    check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_replaceable(out_dir: Path) -> None:
    """Only an earlier artifact or an empty folder may be replaced: never a user's files."""
    if out_dir.exists() and not (out_dir.is_dir() and _is_artifact_or_empty(out_dir)):
        raise ArtifactError(
            f"{out_dir} exists and is not an xpuport artifact; refusing to overwrite it",
            "choose another output directory with -o, or remove that one",
        )


def _is_artifact_or_empty(path: Path) -> bool:
    return (path / MANIFEST).is_file() or not any(path.iterdir())


def write_artifact(
    staging: Path,
    libraries: Mapping[str, Any],
    blobs: Mapping[str, bytes],
    placement: dict[str, Any],
    fields: dict[str, Any],
) -> None:
    """Write libraries (TVM executables by file name), blobs (the graph, host regions),
    placement and the manifest with every file's digest into `staging`."""
    for name, executable in libraries.items():
        executable.export_library(str(staging / name))
    for name, data in blobs.items():
        (staging / name).write_bytes(data)
    (staging / PLACEMENT).write_text(json.dumps(placement, indent=2) + "\n")
    names = [*libraries, *blobs, PLACEMENT]
    files = {name: file_digest(staging / name) for name in names}
    manifest = {
        "format_version": FORMAT_VERSION,
        "versions": environment_versions(),
        **fields,
        "files": files,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def install(staging: Path, out_dir: Path) -> None:
    """Move a complete staging folder to `out_dir`, replacing an earlier artifact there."""
    check_replaceable(out_dir)
    if out_dir.exists():
        retired = out_dir.with_name(f".{out_dir.name}.old-{staging.name[-8:]}")
        out_dir.rename(retired)
        staging.rename(out_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(out_dir)


def read_manifest(artifact_dir: Path) -> dict[str, Any]:
    """Read and verify: format, versions, every file's digest, no unlisted files."""
    path = artifact_dir / MANIFEST
    if not path.is_file():
        raise ArtifactError(
            f"{artifact_dir}: no {MANIFEST}; not an xpuport artifact",
            "give the directory `xpuport compile -o DIR` wrote",
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})", _RECOMPILE) from exc
    _check_shape(path, manifest)
    _check_versions(artifact_dir, manifest)
    _check_files(artifact_dir, manifest["files"])
    return cast(dict[str, Any], manifest)


_RECOMPILE = "recompile the model with `xpuport compile` into a fresh directory"
_MANIFEST_FIELDS = {
    "versions": dict,
    "files": dict,
    "inputs": list,
    "outputs": list,
    "backend": str,
}


def _check_shape(path: Path, manifest: Any) -> None:
    wrong = [
        key
        for key, kind in _MANIFEST_FIELDS.items()
        if not isinstance(manifest, dict) or not isinstance(manifest.get(key), kind)
    ]
    if wrong:
        raise ArtifactError(
            f"{path}: manifest lacks or mistypes {', '.join(wrong)}; it was damaged or edited",
            _RECOMPILE,
        )


def _check_versions(artifact_dir: Path, manifest: Mapping[str, Any]) -> None:
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{artifact_dir}: artifact format {manifest.get('format_version')}, this xpuport "
            f"reads format {FORMAT_VERSION}",
            _RECOMPILE,
        )
    built, here = manifest.get("versions", {}), environment_versions()
    differ = [f"{k} {built.get(k)} (here {v})" for k, v in here.items() if built.get(k) != v]
    if differ:
        raise ArtifactError(
            f"{artifact_dir}: built with {', '.join(differ)}",
            f"{_RECOMPILE}, or install the versions it was built with",
        )


def _check_files(artifact_dir: Path, files: Mapping[str, str]) -> None:
    present = {p.name for p in artifact_dir.iterdir() if p.name != MANIFEST}
    unlisted = sorted(present - set(files))
    missing = sorted(set(files) - present)
    changed = sorted(n for n in set(files) & present if file_digest(artifact_dir / n) != files[n])
    if unlisted or missing or changed or not files:
        raise ArtifactError(
            f"{artifact_dir}: artifact does not match its manifest (changed: {changed}, "
            f"missing: {missing}, unlisted: {unlisted}); it was modified after compile",
            _RECOMPILE,
        )


def _check_library_kernels(artifact_dir: Path, manifest: Mapping[str, Any]) -> None:
    """An artifact that calls library kernels runs only where they are registered."""
    missing = missing_functions(manifest.get("library_calls", {}))
    if missing:
        raise DeviceUnavailableError(
            f"{artifact_dir} calls library kernels this machine lacks: {', '.join(missing)}",
            "install the library they name (xpuport.<device>.<library>.<op>), or recompile "
            "here (without a library: `xpuport compile --no-library`)",
        )


class Artifact:
    """A verified artifact directory. `run` needs the backend's device on this machine."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.inputs = tuple(TensorSpec.from_json(spec) for spec in self.manifest["inputs"])
        self.outputs = tuple(TensorSpec.from_json(spec) for spec in self.manifest["outputs"])

    @property
    def backend_name(self) -> str:
        return str(self.manifest["backend"])

    @property
    def graph_path(self) -> Path:
        return self.path / GRAPH

    @property
    def tuned_kernels(self) -> list[str]:
        """The kernels tuning records scheduled (none when built without a database)."""
        return list((self.manifest.get("tuning") or {}).get("tuned_kernels", []))

    def prepare_runtime(self) -> None:
        """Set this process up to run this artifact (its thread count, its library kernels);
        done on the first run, again wherever another artifact ran in between."""
        self._backend()

    @cached_property
    def _vm(self) -> Any:
        backend = self._backend()
        self._device = backend.device()
        library = tvm.runtime.load_module(str(self.path / LIBRARY))
        return relax.VirtualMachine(library, self._device)

    def _backend(self) -> TvmBackend:
        from xpuport.backends.registry import get_backend

        backend = get_backend(self.backend_name)
        if not isinstance(backend, TvmBackend):
            raise ArtifactError(
                f"{self.path} names backend '{self.backend_name}', which is not a TVM backend",
                "recompile the model with `xpuport compile` for a TVM backend",
            )
        if not backend.is_available():
            raise DeviceUnavailableError(
                f"{self.path} was built for backend '{self.backend_name}', whose device is "
                "not present on this machine",
                "run it on a machine with that device, or compile for --backend cpu",
            )
        backend.prepare_runtime(self.path)
        _check_library_kernels(self.path, self.manifest)
        return backend

    @cached_property
    def _regions(self) -> RegionExecutor:
        backend = self._backend()
        return RegionExecutor(self.path, self.manifest["regions"], backend)

    @property
    def transfers(self) -> dict[str, Any] | None:
        """Host <-> device tensor moves of the last run of a multi-region artifact."""
        return self._regions.last.to_json() if "regions" in self.manifest else None

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on a dict of arrays named like the model's inputs; returns outputs by name."""
        check_inputs(self.inputs, inputs)
        if "regions" in self.manifest:
            names = [spec.name for spec in self.outputs]
            feeds = {spec.name: np.asarray(inputs[spec.name]) for spec in self.inputs}
            return dict(zip(names, self._regions.run(feeds, names), strict=True))
        vm = self._vm
        args = [to_device_tensor(inputs[spec.name], self._device)[0] for spec in self.inputs]
        result = vm["main"](*args)
        flat = list(flatten_outputs(result))
        return {spec.name: array for spec, array in zip(self.outputs, flat, strict=True)}

    def timed_runner(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], None]:
        """One synchronised run on inputs uploaded once: what a benchmark should time.

        On a GPU the run waits for the device, so the timer sees the kernels, not their launch;
        an artifact with host regions is timed as `run`, its transfers included."""
        check_inputs(self.inputs, inputs)
        if "regions" in self.manifest:
            def run_with_transfers() -> None:
                self.run(inputs)

            return run_with_transfers
        vm = self._vm
        args = [to_device_tensor(inputs[spec.name], self._device)[0] for spec in self.inputs]
        function = vm["main"]

        def run_once() -> None:
            function(*args)
            self._device.sync()

        return run_once


def flatten_outputs(value: Any) -> Iterator[np.ndarray]:
    """The VM's result as host arrays (sharing a CPU tensor's memory): tensors, tuples of
    them, and shapes."""
    for item in flatten_values(value):
        yield item if isinstance(item, np.ndarray) else to_host_array(item)[0]
