"""A run's reports (report.json, report.md, one self-contained report.html) and run diffs.

A cell of the scoreboard (op x dtype) shows the worst status among its cases, in SEVERITY
order, the worst error (ULPs for floats, absolute otherwise) and the tolerance of that case.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from xpuport.conformance.report_html import dumps_json, render_html, run_title
from xpuport.conformance.results import (
    FAILURES,
    RESULTS_FILE,
    STATUSES,
    CaseResult,
    ResultsError,
    read_results,
    read_run,
    write_atomic,
)

# Worst first: a scoreboard cell shows the worst status among its cases.
SEVERITY = ("crash", "timeout", "error", "fail", "xpass", "xfail", "unsupported", "pass")
PASSING = ("pass", "xpass")
FAILING = (*FAILURES, "xfail")
EXACT_DTYPES = frozenset({"bool", "string", "int8", "int16", "int32", "int64",
                          "uint8", "uint16", "uint32", "uint64"})
DTYPE_ORDER = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8",
               "uint64", "uint32", "uint16", "uint8", "bool")
MESSAGE_WIDTH = 120
LISTED = 50  # entries shown per long section of a diff
_T = TypeVar("_T")
_Worst = tuple[float, CaseResult]  # an error measure and the case that has it


def severity(status: str) -> int:
    """Higher is worse: pass 0 ... crash 7."""
    return len(SEVERITY) - 1 - SEVERITY.index(status)


def worst_status(statuses: Iterable[str]) -> str:
    return max(statuses, key=severity, default="pass")


def pass_rate(counts: Mapping[str, int]) -> float | None:
    """(pass + xpass) over every case not unsupported; None when there is no such case."""
    judged = sum(counts.values()) - counts.get("unsupported", 0)
    return (counts.get("pass", 0) + counts.get("xpass", 0)) / judged if judged else None


def summarize(run: dict[str, Any], results: list[CaseResult]) -> dict[str, Any]:
    """report.json: run info, counts, pass rate, the op x dtype rows, failures, xpass, debt."""
    counts = Counter(result.status for result in results)
    ordered = sorted(results, key=lambda r: (-severity(r.status), r.case))
    return {
        "run": dict(run),
        "total": len(results),
        "counts": {status: counts[status] for status in STATUSES},
        "pass_rate": pass_rate(counts),
        "green": not any(counts[status] for status in FAILURES),
        "severity": list(SEVERITY),
        "dtypes": sorted({r.dtype for r in results}, key=_dtype_key),
        "ops": _op_rows(results),
        "failures": [_failure(r) for r in ordered if r.status in FAILURES],
        "xpass": [{"case": r.case, "op": r.op, "dtype": r.dtype, "expected": r.expected,
                   "message": r.message} for r in ordered if r.status == "xpass"],
        "tolerance_debt": _tolerance_debt(results),
        "passes_by_lowering": lowering_counts(results),
    }


def lowering_counts(results: list[CaseResult]) -> dict[str, int]:
    """Of the passing cases: how many needed decomposition, how many ran nodes on the host."""
    passed = [r.details.get("placement") or {} for r in results if r.status in ("pass", "xpass")]
    return {"decomposed": sum(1 for p in passed if p.get("decomposed")),
            "host": sum(1 for p in passed if p.get("host"))}


def _dtype_key(dtype: str) -> tuple[int, str]:
    return (DTYPE_ORDER.index(dtype) if dtype in DTYPE_ORDER else len(DTYPE_ORDER), dtype)


def _op_rows(results: list[CaseResult]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str], dict[str, list[CaseResult]]] = defaultdict(
        lambda: defaultdict(list))
    for result in results:
        cells[(result.family, result.op)][result.dtype].append(result)
    return [
        {"op": op, "family": family,
         "status": worst_status(r.status for group in by_dtype.values() for r in group),
         "dtypes": {d: _cell(d, by_dtype[d]) for d in sorted(by_dtype, key=_dtype_key)}}
        for (family, op), by_dtype in sorted(cells.items())
    ]


def _cell(dtype: str, cases: list[CaseResult]) -> dict[str, Any]:
    ordered = sorted(cases, key=lambda r: (-severity(r.status), r.case))
    metric, worst = _worst_error(dtype, cases)
    shown = worst[1] if worst else ordered[0]
    return {
        "status": ordered[0].status,
        "counts": dict(Counter(r.status for r in ordered)),
        "metric": metric,
        "worst": worst[0] if worst else None,
        "worst_case": shown.case,
        "tolerance": shown.tolerance,
        "cases": [r.case for r in ordered],
    }


def _worst_error(dtype: str, cases: list[CaseResult]) -> tuple[str, _Worst | None]:
    """ULPs for floats (and "mixed"), falling back to the absolute error where none has ULPs."""
    metrics = ("max_abs",) if dtype in EXACT_DTYPES else ("max_ulp", "max_abs")
    for metric in metrics:
        measured = [(n, r) for r in cases if (n := _number(getattr(r, metric))) is not None]
        if measured:
            return metric, max(measured, key=lambda pair: pair[0])
    return metrics[0], None


def _number(value: float | str | None) -> float | None:
    """An error measure as a float; "inf" is infinite and so is nan (a broken comparison)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return math.inf if math.isnan(number) else number


def _failure(result: CaseResult) -> dict[str, Any]:
    return {
        "case": result.case, "op": result.op, "dtype": result.dtype, "status": result.status,
        "message": result.message,
        "errors": {"max_abs": result.max_abs, "max_rel": result.max_rel,
                   "max_ulp": result.max_ulp, "mismatch_ratio": result.mismatch_ratio},
        "tolerance": result.tolerance,
    }


def _tolerance_debt(results: list[CaseResult]) -> list[dict[str, Any]]:
    """Every widened tolerance, by op and dtype (and reason, rtol, atol should they vary)."""
    groups: Counter[tuple[str, str, str, Any, Any]] = Counter()
    for result in results:
        tolerance = result.tolerance or {}
        if tolerance.get("override"):
            key = (result.op, result.dtype, str(tolerance["override"]),
                   tolerance.get("rtol"), tolerance.get("atol"))
            groups[key] += 1
    return [
        {"op": op, "dtype": dtype, "reason": reason, "rtol": rtol, "atol": atol, "cases": n}
        for (op, dtype, reason, rtol, atol), n in sorted(groups.items(), key=lambda g: g[0][:3])
    ]


def load_run(folder: Path) -> tuple[dict[str, Any], list[CaseResult]]:
    """run.json and the results of a run folder; ResultsError when either cannot be read."""
    return _read(folder, read_run), _read(folder, lambda f: read_results(f / RESULTS_FILE))


def _read(folder: Path, reader: Callable[[Path], _T]) -> _T:
    if not folder.is_dir():
        raise ResultsError(f"{folder} is not a folder",
                           "point at the --out folder of an `xpuport conform` run")
    try:
        return reader(folder)
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"cannot read the run in {folder}: {exc}",
                           "check the folder's permissions, or rerun the conformance run") from exc


def write_reports(folder: Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html into the run folder, each atomically."""
    run, results = load_run(folder)
    return write_documents(folder, summarize(run, results), results)


def write_documents(
    folder: Path, summary: dict[str, Any], results: list[CaseResult]
) -> dict[str, Path]:
    """The three reports of a summary the caller already has."""
    documents = {
        "json": ("report.json", dumps_json(summary, indent=2) + "\n"),
        "md": ("report.md", render_markdown(summary)),
        "html": ("report.html", render_html(summary, results)),
    }
    return {key: write_atomic(folder / name, text) for key, (name, text) in documents.items()}


# ---------------------------------------------------------------------------------- Markdown


def render_markdown(summary: dict[str, Any]) -> str:
    run, counts = summary["run"], summary["counts"]
    failed = sum(counts[status] for status in FAILURES)
    versions = ", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items())
    lines = [f"# Conformance: {_md(run_title(run))}", "",
             f"**{'GREEN' if summary['green'] else 'RED'}**: {summary['total']} cases, "
             f"{failed} unexpected failures. Started {_md(run.get('started'))}.", ""]
    if versions:
        lines += [f"Versions: {_md(versions)}", ""]
    lines += _table(["status", "cases"], [[s, str(counts[s])] for s in STATUSES])
    rate = summary["pass_rate"]
    lines += ["", f"Pass rate: {'n/a' if rate is None else f'{rate:.1%}'} "
              "(pass + xpass over the cases that are not unsupported)", ""]
    lines += [f"## Failures ({len(summary['failures'])})", ""]
    lines += _table(["case", "status", "max abs", "max ULP", "tolerance", "message"], [
        [f["case"], f["status"], _num(f["errors"]["max_abs"]), _num(f["errors"]["max_ulp"]),
         tolerance_text(f["tolerance"]), _truncate(f["message"])] for f in summary["failures"]])
    lines += ["", f"## Unexpected passes ({len(summary['xpass'])})", ""]
    lines += [f"- {_md(x['case'])}: expected {_md((x['expected'] or {}).get('kind'))}, "
              f"{_md((x['expected'] or {}).get('reason'))}" for x in summary["xpass"]] or ["none"]
    debt = summary["tolerance_debt"]
    lines += ["", f"## Tolerance debt ({len(debt)})", ""]
    lines += _table(["op", "dtype", "rtol", "atol", "cases", "reason"], [
        [d["op"], d["dtype"], _num(d["rtol"]), _num(d["atol"]), str(d["cases"]), d["reason"]]
        for d in debt])
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["none"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]


def _md(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("<", "&lt;").replace("\r", " ").replace("\n", " ")


def _num(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if isinstance(value, float | int) else str(value)


def _truncate(text: str, width: int = MESSAGE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def tolerance_text(tolerance: Mapping[str, Any] | None) -> str:
    if not tolerance:
        return ""
    rtol, atol = tolerance.get("rtol"), tolerance.get("atol")
    text = "exact" if not rtol and not atol else (
        _num(rtol) if rtol == atol else f"rtol {_num(rtol)} atol {_num(atol)}")
    return text + (" (override)" if tolerance.get("override") else "")


# -------------------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Change:
    case: str
    old: str | None  # None: the case is not in the old run
    new: str | None  # None: the case is not in the new run


@dataclass(frozen=True)
class Diff:
    regressions: tuple[Change, ...]
    fixes: tuple[Change, ...]
    new_cases: tuple[Change, ...]
    removed_cases: tuple[Change, ...]
    changed: tuple[Change, ...]  # every other status change of a case in both runs


def classify(old: str, new: str) -> str | None:
    """regression, fix, changed, or None when the status is the same.

    regression: not an unexpected failure before and one now, or passing (pass, xpass) before
    and xfail now. fix: failing (unexpected failure, xfail) before and passing now.
    """
    if old == new:
        return None
    if (new in FAILURES and old not in FAILURES) or (old in PASSING and new == "xfail"):
        return "regression"
    if old in FAILING and new in PASSING:
        return "fix"
    return "changed"


def diff(old: Path, new: Path) -> Diff:
    """Compare two run folders case by case."""
    before = {r.case: r.status for r in _read(old, lambda f: read_results(f / RESULTS_FILE))}
    after = {r.case: r.status for r in _read(new, lambda f: read_results(f / RESULTS_FILE))}
    kinds: dict[str | None, list[Change]] = defaultdict(list)
    for case in sorted(before.keys() & after.keys()):
        kinds[classify(before[case], after[case])].append(Change(case, before[case], after[case]))
    return Diff(
        tuple(kinds["regression"]), tuple(kinds["fix"]),
        tuple(Change(case, None, after[case]) for case in sorted(after.keys() - before.keys())),
        tuple(Change(case, before[case], None) for case in sorted(before.keys() - after.keys())),
        tuple(kinds["changed"]),
    )


def format_diff(d: Diff) -> str:
    sections = (("Regressions", d.regressions, None), ("Fixes", d.fixes, None),
                ("Other status changes", d.changed, LISTED), ("New cases", d.new_cases, LISTED),
                ("Removed cases", d.removed_cases, LISTED))
    lines = [f"# {len(d.regressions)} regressions, {len(d.fixes)} fixes"]
    for title, changes, limit in sections:
        shown = changes if limit is None else changes[:limit]
        lines += ["", f"## {title} ({len(changes)})", ""]
        lines += [f"- {c.case}: {c.old or 'absent'} -> {c.new or 'absent'}" for c in shown]
        if len(changes) > len(shown):
            lines.append(f"- ... and {len(changes) - len(shown)} more")
        if not changes:
            lines.append("none")
    return "\n".join(lines) + "\n"
