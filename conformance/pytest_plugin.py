"""The pytest plugin (entry point `pytest11`): a vendor's CI runs the suite with pytest.

    pytest --pyargs xpuport.conformance --xpuport-backend=mychip [--xpuport-ops=Add,Conv]

Every case is one test, named by its case id. The cases run once, in isolated workers (a
crashing kernel fails one test), and each test reports its case: pass, fail with the errors,
skip for unsupported, xfail for a failure the backend's expectations name.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from xpuport.conformance.results import FAILURES, CaseResult


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xpuport", "xpuport operator conformance")
    group.addoption("--xpuport-backend", help="backend to check (enables the suite)")
    group.addoption("--xpuport-profile", help="hardware profile (default: the backend's)")
    group.addoption("--xpuport-suite", default="ops", help="ops, onnx or models")
    group.addoption("--xpuport-ops", default="", help="comma-separated ops")
    group.addoption("--xpuport-dtypes", default="", help="comma-separated dtypes")
    group.addoption("--xpuport-jobs", type=int, default=1, help="worker processes")
    group.addoption("--xpuport-fallback", action="store_true",
                    help="compile each case as `xpuport compile` does, host fallback included")
    group.addoption("--xpuport-out", help="results folder (default: a temporary one)")
    group.addoption("--xpuport-expectations", action="append", default=[],
                    help="extra expectations TOML file (repeatable)")


def _names(config: pytest.Config, option: str) -> tuple[str, ...]:
    text = config.getoption(option) or ""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "xpuport_case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    if not config.getoption("--xpuport-backend"):
        metafunc.parametrize("xpuport_case", [pytest.param(
            None, marks=pytest.mark.skip(reason="pass --xpuport-backend=NAME"))])
        return
    from xpuport.conformance.conform import suite_cases

    cases = suite_cases(config.getoption("--xpuport-suite"), _names(config, "--xpuport-ops"),
                        _names(config, "--xpuport-dtypes"))
    ids = [case.case_id for case in cases]
    metafunc.parametrize("xpuport_case", ids, ids=ids)


@pytest.fixture(scope="session")
def xpuport_results(request: pytest.FixtureRequest) -> dict[str, CaseResult]:
    """Runs the selected cases once, in workers, and returns their results by case id."""
    from xpuport.api import resolve_profile
    from xpuport.backends.registry import get_backend
    from xpuport.conformance.conform import ConformRequest, conform
    from xpuport.conformance.report import write_reports
    from xpuport.conformance.runner import RunOptions

    config = request.config
    backend = get_backend(config.getoption("--xpuport-backend"))
    profile = resolve_profile(backend, config.getoption("--xpuport-profile"))
    chosen = config.getoption("--xpuport-out")
    out = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="xpuport-conform-"))
    conform_request = ConformRequest(
        backend.name, out, profile.name, config.getoption("--xpuport-suite"),
        _names(config, "--xpuport-ops"), _names(config, "--xpuport-dtypes"),
        options=RunOptions(jobs=config.getoption("--xpuport-jobs"),
                           fallback=config.getoption("--xpuport-fallback")),
        expectations=tuple(Path(p) for p in config.getoption("--xpuport-expectations")))
    results = conform(conform_request, backend, profile)
    write_reports(out)
    return {result.case: result for result in results}


def check_case(result: CaseResult | None, case_id: str) -> None:
    """Turn a case's result into the pytest outcome of its test."""
    if result is None:
        pytest.fail(f"{case_id}: the run produced no result")
    if result.status == "unsupported":
        pytest.skip(f"unsupported: {result.message}")
    if result.status == "xfail":
        pytest.xfail((result.expected or {}).get("reason", result.message))
    if result.status in FAILURES:
        pytest.fail(_failure(result), pytrace=False)


def _failure(result: CaseResult) -> str:
    tolerance: dict[str, Any] = result.tolerance or {}
    return (f"{result.case}: {result.status} {result.message}\n"
            f"  max abs {result.max_abs}, max rel {result.max_rel}, max ulp {result.max_ulp}, "
            f"mismatch {result.mismatch_ratio}; tolerance rtol {tolerance.get('rtol')} "
            f"atol {tolerance.get('atol')} ({tolerance.get('basis')})")
