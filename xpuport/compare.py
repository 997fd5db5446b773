"""Run a peer engine on the same inputs and measure how far xpuport's outputs are from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from xpuport.errors import XpuportError

PEERS = ("onnxruntime",)
# fp32 end-to-end agreement used by `xpuport run --compare` unless the user states another:
# per element |actual - expected| <= atol + rtol * |expected| (numpy.allclose's rule).
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


@dataclass(frozen=True)
class OutputError:
    name: str
    max_abs: float
    max_rel: float  # over elements where |expected| > atol, so near-zero values don't dominate
    within: bool


def onnxruntime_session(model_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def run_peer(
    peer: str, model_path: Path, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    if peer not in PEERS:
        raise XpuportError(
            f"unknown peer '{peer}' for --compare", f"use one of: {', '.join(PEERS)}"
        )
    session = onnxruntime_session(model_path)
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(inputs)), strict=True))


def compare(
    actual: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> list[OutputError]:
    return [_compare_one(name, actual[name], expected[name], atol, rtol) for name in expected]


def _compare_one(
    name: str, actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float
) -> OutputError:
    if actual.shape != expected.shape:
        return OutputError(name, float("inf"), float("inf"), False)
    got = actual.astype(np.float64)
    want = expected.astype(np.float64)
    diff = np.abs(got - want)
    if diff.size == 0:
        return OutputError(name, 0.0, 0.0, True)
    significant = np.abs(want) > atol
    rel = diff[significant] / np.abs(want[significant])
    nan_agree = bool(np.array_equal(np.isnan(got), np.isnan(want)))
    finite = ~np.isnan(want)
    within = nan_agree and bool(np.all(diff[finite] <= atol + rtol * np.abs(want[finite])))
    return OutputError(
        name,
        float(np.nanmax(diff)) if finite.any() else 0.0,
        float(np.nanmax(rel)) if rel.size else 0.0,
        within,
    )
