"""Export a torch.nn.Module to ONNX with torch's dynamo exporter. The only use of torch."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpuport.errors import ExportError
from xpuport.ir.canonicalize import PINNED_OPSET
from xpuport.ir.inspect import TensorSpec

BATCH_DIM_NAME = "batch"


def export_module(
    module: Any,
    inputs: Sequence[TensorSpec],
    output_path: str | Path,
    *,
    dynamic_batch: bool = False,
) -> Path:
    """Export `module` (a torch.nn.Module) for example inputs of the given specs.

    With `dynamic_batch`, dim 0 of every input is symbolic ("batch"). The file is written
    atomically: a failed export leaves nothing at `output_path`.
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise ExportError(
            f"expected a torch.nn.Module, got {type(module).__name__}",
            "make the factory return an nn.Module instance",
        )
    examples = tuple(_example_tensor(torch, spec, dynamic_batch) for spec in inputs)
    dynamic_shapes = _dynamic_shapes(torch, inputs) if dynamic_batch else None
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    try:
        program = torch.onnx.export(
            module,
            examples,
            dynamo=True,
            opset_version=PINNED_OPSET,
            input_names=[spec.name for spec in inputs],
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    except Exception as exc:  # torch raises many types; all mean "export failed"
        raise ExportError(
            f"torch.onnx.export failed for {type(module).__name__}: {exc}",
            "check that the input shapes and dtypes match what forward() expects",
        ) from exc
    _save_atomically(program, out)
    return out


def load_factory(spec: str) -> Any:
    """Import `package.module:factory` and call the factory: returns the module it builds."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ExportError(
            f"'{spec}' is not of the form MODULE:FACTORY",
            "name an importable module and a callable in it, e.g. mypkg.models:build",
        )
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as `python -m` does: the user's own models module
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ExportError(
            f"cannot load '{spec}': {exc}",
            "check the module is importable from the current directory or installed",
        ) from exc
    return factory() if callable(factory) else factory


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ExportError(
            "exporting needs torch, which is not installed",
            "pip install torch==2.13.0 (the CPU wheel), or start from an ONNX file",
        ) from exc
    return torch


def _example_tensor(torch: Any, spec: TensorSpec, dynamic_batch: bool) -> Any:
    if not spec.is_static:
        raise ExportError(
            f"input '{spec.name}' needs concrete dims for the example, got {spec.shape}",
            "give integer dims (use --dynamic-batch for a symbolic batch)",
        )
    rng = np.random.default_rng(0)
    shape = tuple(int(d) for d in spec.shape)
    if dynamic_batch and shape[:1] == (1,):
        # torch.export specializes size-1 dims to constants; trace a batch of 2 instead.
        shape = (2, *shape[1:])
    if np.issubdtype(np.dtype(spec.dtype), np.integer):
        return torch.from_numpy(rng.integers(0, 2, size=shape).astype(spec.dtype))
    return torch.from_numpy(rng.standard_normal(shape).astype(spec.dtype))


def _dynamic_shapes(torch: Any, inputs: Sequence[TensorSpec]) -> tuple[dict[int, Any], ...]:
    batch = torch.export.Dim(BATCH_DIM_NAME, min=1)
    return tuple({0: batch} for _ in inputs)


def _save_atomically(program: Any, out: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        program.save(tmp_name)
        Path(tmp_name).replace(out)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
