"""Fixtures for the integration tests: torch models exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

import xpuport
from xpuport.benchmarks.models import MODELS
from xpuport.ir.export import load_factory


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reference torch models of xpuport.benchmarks.models, exported to ONNX."""
    folder = tmp_path_factory.mktemp("exported")
    paths = {}
    for name in ("mlp", "cnn", "encoder"):
        entry = MODELS[name]
        module = load_factory(entry.factory)
        paths[name] = xpuport.export(module, entry.inputs, folder / f"{name}.onnx")
    return paths
