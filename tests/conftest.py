"""Shared fixtures: every test gets its own compile cache, so no test sees another's work."""

from __future__ import annotations

from pathlib import Path

import pytest

from xpuport.cache import CACHE_DIR_ENV


@pytest.fixture(autouse=True)
def isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    cache = tmp_path_factory.mktemp("xpuport-cache")
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache))
    return cache


@pytest.fixture
def convs_on_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every convolution to the conv library, however small (tests of that path use
    small models, whose convolutions TVM would otherwise compute itself)."""
    from xpuport.lowering import tvm_kernels

    monkeypatch.setattr(tvm_kernels, "TVM_CONV_MACS", 0)


@pytest.fixture
def gemms_on_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every GEMM to a library, however small (tests of that path use small models,
    whose GEMMs TVM would otherwise compute itself)."""
    from xpuport.backends import cpu

    monkeypatch.setattr(cpu, "gemms_stay_in_tvm", lambda _module: False)
