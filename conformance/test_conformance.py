"""The suite as pytest tests: `pytest --pyargs xpuport.conformance --xpuport-backend=B`."""

from __future__ import annotations

from xpuport.conformance.pytest_plugin import check_case
from xpuport.conformance.results import CaseResult


def test_case(xpuport_case: str | None, xpuport_results: dict[str, CaseResult]) -> None:
    assert xpuport_case is not None
    check_case(xpuport_results.get(xpuport_case), xpuport_case)
