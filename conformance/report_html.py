"""report.html: one self-contained scoreboard (ops x dtypes) drawn by an inline script.

The report's data sits in the page as inert JSON; the script builds every element and text
node itself (no innerHTML), and a Content-Security-Policy forbids fetching anything.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from typing import Any

from xpuport.conformance.results import CaseResult


def dumps_json(value: Any, **options: Any) -> str:
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


def run_title(run: Mapping[str, Any]) -> str:
    return f"{run.get('backend')} / {run.get('profile')} / suite {run.get('suite')}"


def render_html(summary: dict[str, Any], results: list[CaseResult]) -> str:
    """One file, nothing fetched: the data as inert JSON, drawn by the inline script."""
    payload = {"summary": summary, "cases": {r.case: vars(r) for r in results}}  # no deep copy
    data = dumps_json(payload, separators=(",", ":"))
    # "<" never occurs outside a JSON string: escaped, no "</script>" or "<!--" can end the block.
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    run = summary["run"]
    title = html.escape(f"Conformance: {run_title(run)}")
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
