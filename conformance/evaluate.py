"""One case on a prepared backend: run it, compute its golden, measure the difference."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from xpuport.conformance.cases import Case, output_dtypes
from xpuport.conformance.golden import golden
from xpuport.conformance.tolerance import Errors, measure
from xpuport.errors import XpuportError


@dataclass(frozen=True)
class Outcome:
    """What a worker reports for one case; the parent adds expectations and details."""

    case: str
    status: str  # pass, fail or error: crash and timeout are seen by the parent
    errors: dict[str, Any] | None = None
    message: str = ""
    seconds: float = 0.0
    placement: dict[str, int] | None = None  # device/host/decomposed nodes, where it changed


def evaluate(case: Case, run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]) -> Outcome:
    started = time.perf_counter()
    try:
        expected = golden(case)
    except Exception as exc:  # noqa: BLE001  # the reference evaluator raises anything
        return Outcome(case.case_id, "error", message=f"golden failed: {error_text(exc)[:500]}")
    try:
        actual = run(dict(case.feeds))
    except Exception as exc:  # noqa: BLE001  # a backend's runtime raises its own types
        return Outcome(case.case_id, "error", message=f"run failed: {error_text(exc)[:500]}",
                       seconds=time.perf_counter() - started)
    errors = compare_outputs(case, actual, expected)
    status = "pass" if errors.passed else "fail"
    return Outcome(case.case_id, status, errors.to_json(), errors.message,
                   time.perf_counter() - started)


def compare_outputs(case: Case, actual: list[np.ndarray], expected: list[np.ndarray]) -> Errors:
    """The worst of every output's errors (one case may have several outputs)."""
    if len(actual) != len(expected):
        return Errors(math.inf, math.inf, math.inf, 1.0,
                      f"{len(actual)} outputs, expected {len(expected)}")
    dtypes = output_dtypes(case.onnx_model())
    worst = Errors(0.0, 0.0, 0.0, 0.0)
    for index, (out, ref, dtype) in enumerate(zip(actual, expected, dtypes, strict=True)):
        errors = measure(np.asarray(out), np.asarray(ref), dtype, case.tolerance)
        message = worst.message or (f"output {index}: {errors.message}" if errors.message else "")
        worst = replace(worst, max_abs=max(worst.max_abs, errors.max_abs),
                        max_rel=max(worst.max_rel, errors.max_rel),
                        max_ulp=max(worst.max_ulp, errors.max_ulp),
                        mismatch_ratio=max(worst.mismatch_ratio, errors.mismatch_ratio),
                        message=message)
    return worst


def error_text(exc: BaseException) -> str:
    """One line for a result: our own errors' message, else the type and the last line."""
    if isinstance(exc, XpuportError):
        return exc.message
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{exc.__class__.__name__}: {lines[-1] if lines else ''}"
