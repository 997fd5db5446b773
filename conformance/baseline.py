"""A backend's current failures written as expectations: the baseline a vendor starts from.

Each entry's reason is what the run observed (the backend's own error, or the error against
the tolerance); a person then replaces it with the cause where it is known.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence

from xpuport.conformance.results import FAILURES, CaseResult


def baseline_toml(results: Sequence[CaseResult], backend: str) -> str:
    """TOML [[expect]] entries for every unexpected failure: one per op and dtype when all of
    its cases fail alike, one per case otherwise."""
    by_key: dict[tuple[str, str], list[CaseResult]] = defaultdict(list)
    for result in results:
        by_key[(result.op, result.dtype)].append(result)
    lines = [f"# Expected failures of backend '{backend}', written from a conformance run."]
    for (op, dtype), group in sorted(by_key.items()):
        failing = [r for r in group if r.status in FAILURES]
        if not failing:
            continue
        if len(failing) == len(group) and len({r.status for r in failing}) == 1:
            lines += _entry(op, dtype, None, failing[0])
        else:
            for result in failing:
                lines += _entry(op, dtype, result.case, result)
    return "\n".join(lines) + "\n"


def _entry(op: str, dtype: str, case: str | None, result: CaseResult) -> list[str]:
    entry = ["", "[[expect]]", f"suite = {json.dumps(result.suite)}", f"op = {json.dumps(op)}",
             f"dtype = {json.dumps(dtype)}"]
    if case is not None:
        entry.append(f"case = {json.dumps(case)}")
    entry += [f"kind = {json.dumps(result.status)}", f"reason = {json.dumps(observed(result))}"]
    return entry


def observed(result: CaseResult) -> str:
    """What went wrong, in one line: the backend's message or the error against tolerance."""
    if result.message:
        return " ".join(result.message.split())[:240]
    tolerance = result.tolerance or {}
    return (f"max error {result.max_ulp} ULP, {result.max_abs} abs, "
            f"{result.mismatch_ratio} of elements beyond {tolerance.get('basis', 'tolerance')}")
