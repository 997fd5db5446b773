"""A run's reports (report.json, report.md, one self-contained report.html) and run diffs.

A cell of the scoreboard (op x dtype) shows the worst status among its cases, in SEVERITY
order, the worst error (ULPs for floats, absolute otherwise) and the tolerance of that case.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from xpuport.conformance.results import (
    FAILURES,
    RESULTS_FILE,
    STATUSES,
    CaseResult,
    ResultsError,
    read_results,
    read_run,
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
    }


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
    summary = summarize(run, results)
    documents = {
        "json": ("report.json", _dumps(summary, indent=2) + "\n"),
        "md": ("report.md", render_markdown(summary)),
        "html": ("report.html", render_html(summary, results)),
    }
    return {key: _write_atomic(folder / name, text) for key, (name, text) in documents.items()}


def _dumps(value: Any, **options: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:  # an infinity or nan somewhere: rare, so cleaned only then
        return json.dumps(_clean(value), allow_nan=False, **options)


def _clean(value: Any) -> Any:
    """JSON-safe: infinities and nans (which JSON lacks) become strings, as results.py does."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def _write_atomic(path: Path, text: str) -> Path:
    """A temp file in the same folder, then a rename: a reader sees the old or the new file."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        temporary = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            temporary.chmod(0o644)
            temporary.replace(path)  # os.replace
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ResultsError(f"cannot write {path}: {exc}",
                           "make the run folder writable, or copy it somewhere writable") from exc
    return path


# ---------------------------------------------------------------------------------- Markdown


def render_markdown(summary: dict[str, Any]) -> str:
    run, counts = summary["run"], summary["counts"]
    failed = sum(counts[status] for status in FAILURES)
    versions = ", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items())
    lines = [f"# Conformance: {_md(_title(run))}", "",
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


def _title(run: Mapping[str, Any]) -> str:
    return f"{run.get('backend')} / {run.get('profile')} / suite {run.get('suite')}"


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


# -------------------------------------------------------------------------------------- HTML


def render_html(summary: dict[str, Any], results: list[CaseResult]) -> str:
    """One file, nothing fetched: the data as inert JSON, drawn by the inline script."""
    payload = {"summary": summary, "cases": {r.case: vars(r) for r in results}}  # no deep copy
    data = _dumps(payload, separators=(",", ":"))
    # "<" never occurs outside a JSON string: escaped, no "</script>" or "<!--" can end the block.
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    run = summary["run"]
    title = html.escape(f"Conformance: {_title(run)}")
    versions = ", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items())
    about = html.escape(f"started {run.get('started')}" + (f"; {versions}" if versions else ""))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title><style>{_CSS}</style></head>
<body><header><h1>{title}</h1><p id="run">{about}</p>
<div id="counts"></div><div id="legend"></div>
<input id="filter" type="search" placeholder="filter ops" aria-label="filter ops"></header>
<main><div id="board"><table id="grid"><thead></thead><tbody></tbody></table></div>
<aside id="details"><p>Click a cell for its cases.</p></aside></main>
<section><h2>Tolerance debt</h2><div id="debt"></div></section>
<noscript>The scoreboard needs JavaScript; report.md and report.json hold the same data.</noscript>
<script type="application/json" id="report-data">{data}</script>
<script>{_JS}</script></body></html>
"""


_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:1em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em}#run{color:#555;margin:0 0 .5em}
.chip{display:inline-block;padding:1px 7px;margin:0 4px 4px 0;border-radius:9px;font-size:12px}
.rate{font-weight:600;margin-left:.5em}.rate.green{color:#2b7a0b}.rate.red{color:#b00020}
#legend .label{color:#555;margin-right:4px}#filter{margin:.4em 0;padding:3px 6px;width:18em}
main{display:flex;gap:1em;align-items:flex-start}#board{overflow:auto;max-height:80vh}
#grid{border-collapse:collapse}
#grid th,#grid td{border:1px solid #fff;padding:2px 6px;text-align:center;white-space:nowrap}
#grid thead th{position:sticky;top:0;background:#f0f0f0}#grid th.op{text-align:left}
#grid tr.family th{text-align:left;background:#e4e4e4}
td.cell{cursor:pointer;min-width:6em}td.cell .tol{font-size:10px;opacity:.8}
td.empty{background:#fafafa}td.selected{outline:2px solid #000;outline-offset:-2px}
#details{position:sticky;top:0;flex:1;min-width:24em;max-height:80vh;overflow:auto}
.case{border-left:4px solid #999;padding:2px 8px;margin:6px 0;background:#fafafa}
.case h3{font-size:13px;margin:2px 0;word-break:break-all}
dl{display:grid;grid-template-columns:max-content 1fr;gap:1px 8px;margin:0}
dt{color:#555}dd{margin:0;word-break:break-word;white-space:pre-wrap}
table.debt{border-collapse:collapse}
table.debt td,table.debt th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.s-crash{background:#5c0a14;color:#fff}.s-timeout{background:#a4410e;color:#fff}
.s-error{background:#d62839;color:#fff}.s-fail{background:#f28482}.s-xpass{background:#8ecae6}
.s-xfail{background:#f6d55c}.s-unsupported{background:#d9d9d9}.s-pass{background:#a7d88f}
pre.script-error{color:#b00020}
"""

_JS = """
(function () {
  "use strict";
  var body = document.body, INFO = new Map(), RANK = {}, S, CASES;
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function num(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v !== "number") return String(v);
    var a = Math.abs(v);
    if (v === 0 || (a >= 1e-3 && a < 1e5)) return String(+v.toPrecision(4));
    return isFinite(v) ? v.toExponential(2).replace(/\\.?0+e/, "e") : String(v);
  }
  function tol(t) {
    if (!t) return "-";
    var text = !t.rtol && !t.atol ? "exact" : t.rtol === t.atol ? "tol " + num(t.rtol)
      : "rtol " + num(t.rtol) + " atol " + num(t.atol);
    return t.override ? text + " (override)" : text;
  }
  function errText(c) {
    return c.worst === null ? "-" : num(c.worst) + (c.metric === "max_ulp" ? " ulp" : " abs");
  }
  function flat(o) {
    if (o === null || typeof o !== "object") return o;
    return Object.keys(o).map(function (k) {
      return k + "=" + (typeof o[k] === "string" ? o[k] : JSON.stringify(o[k]));
    }).join(", ");
  }
  function renderCounts() {
    var box = document.getElementById("counts");
    Object.keys(S.counts).forEach(function (s) {
      box.appendChild(el("span", "chip s-" + s, s + " " + S.counts[s]));
    });
    var rate = S.pass_rate === null ? "n/a" : (100 * S.pass_rate).toFixed(1) + "%";
    box.appendChild(el("span", "rate " + (S.green ? "green" : "red"),
      (S.green ? "GREEN" : "RED") + ", pass rate " + rate + ", " + S.total + " cases"));
    var legend = document.getElementById("legend");
    legend.appendChild(el("span", "label", "cell = worst status, worst first:"));
    S.severity.forEach(function (s) { legend.appendChild(el("span", "chip s-" + s, s)); });
  }
  function hover(op, dtype, c) {
    var lines = [op + " x " + dtype + ": " + c.status + " (" + c.cases.length + " cases)"];
    c.cases.slice(0, 12).forEach(function (id) {
      var r = CASES[id];
      lines.push(id + ": " + r.status + ", max ulp " + num(r.max_ulp) + ", max abs " +
        num(r.max_abs) + (r.message ? ", " + r.message.slice(0, 80) : ""));
    });
    if (c.cases.length > 12) lines.push("... " + (c.cases.length - 12) + " more: click");
    return lines.join("\\n");
  }
  function cell(row, dtype) {
    var c = row.dtypes[dtype];
    if (!c) return el("td", "cell empty");
    var td = el("td", "cell s-" + c.status);
    td.dataset.op = row.op; td.dataset.dtype = dtype; td.dataset.status = c.status;
    td.appendChild(el("div", "err", errText(c)));
    td.appendChild(el("div", "tol", tol(c.tolerance)));
    td.title = hover(row.op, dtype, c);
    td.tabIndex = 0;
    td.addEventListener("click", function () { select(td); });
    td.addEventListener("keydown", function (e) { if (e.key === "Enter") select(td); });
    INFO.set(td, {op: row.op, dtype: dtype, cell: c});
    return td;
  }
  function renderGrid() {
    var table = document.getElementById("grid"), head = el("tr"), family = null;
    var tbody = table.tBodies[0];
    head.appendChild(el("th", "op", "op"));
    S.dtypes.forEach(function (d) { head.appendChild(el("th", "", d)); });
    table.tHead.appendChild(head);
    S.ops.forEach(function (row) {
      if (row.family !== family) {
        family = row.family;
        var fam = el("tr", "family"), th = el("th", "", family);
        th.colSpan = S.dtypes.length + 1; fam.dataset.family = family;
        fam.appendChild(th); tbody.appendChild(fam);
      }
      var tr = el("tr", "op-row");
      tr.dataset.op = row.op; tr.dataset.family = row.family;
      tr.appendChild(el("th", "op", row.op));
      S.dtypes.forEach(function (d) { tr.appendChild(cell(row, d)); });
      tbody.appendChild(tr);
    });
  }
  function caseBlock(r) {
    var box = el("div", "case"), dl = el("dl"), t = r.tolerance || {}, x = r.expected;
    var title = el("h3", "", r.case + " ");
    title.appendChild(el("span", "chip s-" + r.status, r.status));
    box.dataset.case = r.case; box.appendChild(title);
    var rows = [["max_abs", num(r.max_abs)], ["max_rel", num(r.max_rel)],
      ["max_ulp", num(r.max_ulp)], ["mismatch_ratio", num(r.mismatch_ratio)],
      ["tolerance", tol(r.tolerance)], ["basis", t.basis], ["override", t.override],
      ["message", r.message], ["expected", x ? x.kind + ": " + x.reason : null],
      ["seconds", r.seconds]];
    Object.keys(r.details || {}).forEach(function (k) { rows.push([k, flat(r.details[k])]); });
    rows.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === "") return;
      dl.appendChild(el("dt", "", p[0])); dl.appendChild(el("dd", "", p[1]));
    });
    box.appendChild(dl);
    return box;
  }
  function select(td) {
    var info = INFO.get(td), panel = document.getElementById("details");
    document.querySelectorAll("td.selected").forEach(function (n) {
      n.classList.remove("selected");
    });
    td.classList.add("selected");
    panel.textContent = "";
    panel.appendChild(el("h2", "", info.op + " x " + info.dtype + ": " + info.cell.status));
    info.cell.cases.forEach(function (id) { panel.appendChild(caseBlock(CASES[id])); });
  }
  function filter(e) {
    var needle = e.target.value.trim().toLowerCase(), shown = new Set();
    document.querySelectorAll("#grid tr.op-row").forEach(function (tr) {
      tr.hidden = tr.dataset.op.toLowerCase().indexOf(needle) < 0;
      if (!tr.hidden) shown.add(tr.dataset.family);
    });
    document.querySelectorAll("#grid tr.family").forEach(function (tr) {
      tr.hidden = !shown.has(tr.dataset.family);
    });
  }
  function renderDebt() {
    var box = document.getElementById("debt"), table = el("table", "debt"), head = el("tr");
    if (!S.tolerance_debt.length) { box.appendChild(el("p", "", "No overrides.")); return; }
    ["op", "dtype", "rtol", "atol", "cases", "reason"].forEach(function (h) {
      head.appendChild(el("th", "", h));
    });
    table.appendChild(head);
    S.tolerance_debt.forEach(function (d) {
      var tr = el("tr");
      [d.op, d.dtype, num(d.rtol), num(d.atol), d.cases, d.reason].forEach(function (v) {
        tr.appendChild(el("td", "", v));
      });
      table.appendChild(tr);
    });
    box.appendChild(table);
  }
  function worstCell() {
    var found = null;
    INFO.forEach(function (info, td) {
      if (!found || RANK[info.cell.status] < RANK[INFO.get(found).cell.status]) found = td;
    });
    return found;
  }
  try {
    var data = JSON.parse(document.getElementById("report-data").textContent);
    S = data.summary; CASES = data.cases;
    S.severity.forEach(function (s, i) { RANK[s] = i; });
    renderCounts(); renderGrid(); renderDebt();
    document.getElementById("filter").addEventListener("input", filter);
    var first = worstCell();
    if (first) select(first);
    body.dataset.rendered = "ok";
  } catch (err) {
    body.dataset.rendered = "error";
    body.insertBefore(el("pre", "script-error", "report script failed: " + err), body.firstChild);
  }
})();
"""


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
