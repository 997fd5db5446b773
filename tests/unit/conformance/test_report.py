"""Conformance reports: counts, pass rate, tolerance debt, Markdown, HTML in a browser, diffs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from xpuport.conformance.report import (
    SEVERITY,
    classify,
    diff,
    format_diff,
    summarize,
    worst_status,
    write_reports,
)
from xpuport.conformance.results import (
    FAILURES,
    RESULTS_FILE,
    RUN_FILE,
    STATUSES,
    CaseResult,
    ResultsError,
    ResultsLog,
)

RUN = {"backend": "fake", "profile": "generic", "suite": "ops",
       "started": "2025-01-01T00:00:00+00:00", "versions": {"tvm": "0.27.0", "onnx": "1.17"}}
ROUNDING = {"rtol": 1.2e-7, "atol": 1.2e-7, "basis": "rounding: 2u", "override": None}
EXACT = {"rtol": 0.0, "atol": 0.0, "basis": "exact", "override": None}
FP16_REASON = "fp16 accumulation order in the dense schedule"
WIDENED = {"rtol": 0.01, "atol": 0.02, "basis": "accumulate n=64", "override": FP16_REASON}
EVIL = "TVM build failed: </script><script>alert(1)</script> & <!-- more"


def result(case, status, **fields):
    op, dtype, _ = case.split(".")
    family = {"Add": "elementwise", "MatMul": "matmul", "Softmax": "activation",
              "Conv": "conv", "Gather": "indexing"}.get(op, "other")
    values = {"suite": "ops", "op": op, "family": family, "dtype": dtype, "status": status,
              "tolerance": EXACT if dtype.startswith("int") else ROUNDING,
              "details": {"inputs": {"x": f"{dtype}[2, 3]"}, "attributes": {"axis": 1}}}
    return CaseResult(case=case, **{**values, **fields})


def all_statuses():
    """One run with every status, two widened-tolerance cases and a hostile message."""
    return [
        result("Add.float32.0", "pass", max_abs=1e-7, max_rel=1e-7, max_ulp=0.5,
               mismatch_ratio=0.0),
        result("Add.float32.1", "fail", max_abs=3e-6, max_rel=2e-6, max_ulp=12.0,
               mismatch_ratio=0.25, message="3 of 12 elements out of tolerance"),
        result("Add.int64.0", "pass", max_abs=0.0, max_rel=0.0, max_ulp=0.0, mismatch_ratio=0.0),
        result("MatMul.float16.0", "pass", max_abs=1e-3, max_ulp=3.0, tolerance=WIDENED),
        result("MatMul.float16.1", "xfail", max_abs=0.5, max_ulp="inf", tolerance=WIDENED,
               mismatch_ratio=0.5, expected={"kind": "fail", "reason": "known fp16 drift"}),
        result("MatMul.float32.0", "xpass", max_abs=1e-7, max_ulp=1.0,
               expected={"kind": "fail", "reason": "used to drift on sm_80"}),
        result("Softmax.float32.0", "error", message=EVIL),
        result("Conv.float32.0", "crash", message="worker died (signal 11)"),
        result("Conv.float32.1", "timeout", message="no result within 120 s"),
        result("Gather.int64.0", "unsupported", message="Gather: int64 indices not supported"),
    ]


def make_run(folder, results, **run):
    folder.mkdir(parents=True)
    (folder / RUN_FILE).write_text(json.dumps({**RUN, **run}), encoding="utf-8")
    log = ResultsLog(folder / RESULTS_FILE)
    for item in results:
        log.append(item)
    return folder


@pytest.fixture
def run_folder(tmp_path):
    return make_run(tmp_path / "run", all_statuses())


def test_severity_orders_every_status():
    assert sorted(SEVERITY) == sorted(STATUSES)
    assert worst_status(["pass", "xfail", "unsupported"]) == "xfail"
    assert worst_status(["fail", "timeout", "crash", "error"]) == "crash"


def test_counts_pass_rate_and_verdict():
    summary = summarize(RUN, all_statuses())
    assert summary["total"] == 10
    assert summary["counts"] == {"pass": 3, "fail": 1, "unsupported": 1, "error": 1,
                                 "crash": 1, "timeout": 1, "xfail": 1, "xpass": 1}
    assert summary["pass_rate"] == pytest.approx(4 / 9)  # pass + xpass over 10 - 1 unsupported
    assert summary["green"] is False
    assert [f["case"] for f in summary["failures"]] == [
        "Conv.float32.0", "Conv.float32.1", "Softmax.float32.0", "Add.float32.1"]
    assert [x["case"] for x in summary["xpass"]] == ["MatMul.float32.0"]
    assert summary["run"]["backend"] == "fake"


def test_rows_show_the_worst_status_and_error_per_cell():
    summary = summarize(RUN, all_statuses())
    assert summary["dtypes"] == ["float32", "float16", "int64"]
    rows = {row["op"]: row for row in summary["ops"]}
    assert [row["family"] for row in summary["ops"]] == sorted(r["family"] for r in rows.values())
    add = rows["Add"]["dtypes"]["float32"]
    assert (add["status"], add["metric"], add["worst"]) == ("fail", "max_ulp", 12.0)
    assert add["worst_case"] == "Add.float32.1"
    assert rows["Add"]["dtypes"]["int64"]["metric"] == "max_abs"
    assert rows["Conv"]["dtypes"]["float32"]["status"] == "crash"
    assert rows["MatMul"]["dtypes"]["float16"]["worst"] == float("inf")


def test_green_run_and_all_unsupported_run():
    green = summarize(RUN, [result("Add.float32.0", "pass"), result("Add.float32.1", "xfail")])
    assert green["green"] is True
    assert green["pass_rate"] == 0.5
    declined = summarize(RUN, [result("Gather.int64.0", "unsupported")])
    assert declined["pass_rate"] is None


def test_onnx_suite_rows_use_the_test_op_and_mixed_dtype():
    results = [
        CaseResult("test_gather_elements_0", "onnx", "GatherElements", "onnx", "mixed", "pass",
                   max_abs=0.0, max_ulp=0.0, mismatch_ratio=0.0),
        CaseResult("test_gather_elements_1", "onnx", "GatherElements", "onnx", "mixed", "fail",
                   max_abs=2.0, mismatch_ratio=0.5, message="2 of 4 out of tolerance"),
        CaseResult("test_relu", "onnx", "Relu", "onnx", "float32", "pass", max_ulp=0.0),
    ]
    summary = summarize({**RUN, "suite": "onnx"}, results)
    rows = {row["op"]: row for row in summary["ops"]}
    mixed = rows["GatherElements"]["dtypes"]["mixed"]
    assert mixed["status"] == "fail"
    assert (mixed["metric"], mixed["worst"]) == ("max_ulp", 0.0)
    assert summary["dtypes"] == ["float32", "mixed"]


def test_tolerance_debt_lists_each_override_with_its_reason():
    debt = summarize(RUN, all_statuses())["tolerance_debt"]
    assert debt == [{"op": "MatMul", "dtype": "float16", "reason": FP16_REASON,
                     "rtol": 0.01, "atol": 0.02, "cases": 2}]


def test_write_reports_writes_three_files_atomically(run_folder):
    paths = write_reports(run_folder)
    assert set(paths) == {"json", "md", "html"}
    assert {p.name for p in paths.values()} == {"report.json", "report.md", "report.html"}
    assert not list(run_folder.glob(".*.tmp"))
    report = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert report["counts"]["crash"] == 1
    assert report["tolerance_debt"][0]["reason"] == FP16_REASON
    assert report["ops"][0]["dtypes"]  # a grid row per op
    assert "inf" in json.dumps(report)  # the infinite ULP error survives as a string


def test_markdown_lists_failures_xpass_and_debt(run_folder):
    text = write_reports(run_folder)["md"].read_text(encoding="utf-8")
    assert text.startswith("# Conformance: fake / generic / suite ops")
    assert "**RED**" in text
    assert "| crash | 1 |" in text
    assert "Pass rate: 44.4%" in text
    assert "## Failures (4)" in text
    assert "| Add.float32.1 | fail | 3e-06 | 12 | 1.2e-07 | 3 of 12 elements out of tolerance |" \
        in text
    assert "worker died (signal 11)" in text
    assert "<script>" not in text
    assert "- MatMul.float32.0: expected fail, used to drift on sm_80" in text
    assert f"| MatMul | float16 | 0.01 | 0.02 | 2 | {FP16_REASON} |" in text


def test_a_torn_last_line_is_ignored(run_folder):
    with (run_folder / RESULTS_FILE).open("a", encoding="utf-8") as handle:
        handle.write('{"case": "Add.float32.9", "suite": "ops", "op": "Ad')
    report = json.loads(write_reports(run_folder)["json"].read_text(encoding="utf-8"))
    assert report["total"] == 10


def test_missing_or_unreadable_folders_raise_results_errors(tmp_path):
    with pytest.raises(ResultsError) as missing:
        write_reports(tmp_path / "nowhere")
    assert "--out" in missing.value.fix
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match=r"run\.json"):
        write_reports(tmp_path / "empty")
    with pytest.raises(ResultsError):
        diff(tmp_path / "empty", tmp_path / "nowhere")


@pytest.mark.parametrize(("old", "new", "kind"), [
    ("pass", "fail", "regression"), ("xfail", "crash", "regression"),
    ("unsupported", "error", "regression"), ("pass", "xfail", "regression"),
    ("xpass", "xfail", "regression"), ("fail", "pass", "fix"), ("xfail", "xpass", "fix"),
    ("timeout", "xpass", "fix"), ("fail", "crash", "changed"), ("fail", "xfail", "changed"),
    ("pass", "unsupported", "changed"), ("pass", "pass", None),
])
def test_classify(old, new, kind):
    assert classify(old, new) == kind


def test_diff_finds_regressions_fixes_and_membership_changes(tmp_path):
    old = make_run(tmp_path / "old", [
        result("Add.float32.0", "pass"), result("Add.float32.1", "fail"),
        result("Conv.float32.0", "fail"), result("Gather.int64.0", "pass"),
        result("Softmax.float32.0", "pass")])
    new = make_run(tmp_path / "new", [
        result("Add.float32.0", "crash"), result("Add.float32.1", "pass"),
        result("Conv.float32.0", "timeout"), result("Gather.int64.0", "pass"),
        result("MatMul.float32.0", "fail")])
    changes = diff(old, new)
    assert [(c.case, c.old, c.new) for c in changes.regressions] == [
        ("Add.float32.0", "pass", "crash")]
    assert [(c.case, c.old, c.new) for c in changes.fixes] == [("Add.float32.1", "fail", "pass")]
    assert [(c.case, c.old, c.new) for c in changes.changed] == [
        ("Conv.float32.0", "fail", "timeout")]
    assert [(c.case, c.new) for c in changes.new_cases] == [("MatMul.float32.0", "fail")]
    assert [(c.case, c.old) for c in changes.removed_cases] == [("Softmax.float32.0", "pass")]
    assert vars(changes.regressions[0]) == {"case": "Add.float32.0", "old": "pass", "new": "crash"}
    text = format_diff(changes)
    assert "## Regressions (1)" in text
    assert "- Add.float32.0: pass -> crash" in text
    assert "## Fixes (1)" in text
    assert "- Add.float32.1: fail -> pass" in text
    assert "- MatMul.float32.0: absent -> fail" in text


def test_html_is_self_contained_and_escapes_its_data(run_folder):
    page = write_reports(run_folder)["html"].read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page and "@import" not in page
    data = page.split('<script type="application/json" id="report-data">', 1)[1]
    data = data.split("</script>", 1)[0]
    assert "<" not in data  # nothing in the data block can close or comment it
    assert json.loads(data)["cases"]["Softmax.float32.0"]["message"] == EVIL


class DomCells(HTMLParser):
    """The grid cells, the details panel's cases and the script elements of a dumped DOM."""

    def __init__(self):
        super().__init__()
        self.cells, self.cases, self.scripts, self.body = {}, [], 0, {}
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "body":
            self.body = attributes
        if tag == "script":
            self.scripts += 1
        if tag == "td" and "cell" in classes and "data-op" in attributes:
            self._cell = (attributes["data-op"], attributes["data-dtype"])
            self.cells[self._cell] = {"classes": classes, "title": attributes.get("title", ""),
                                      "text": ""}
        if tag == "div" and "case" in classes:
            self.cases.append(attributes["data-case"])

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self.cells[self._cell]["text"] += data


def chromium(*args, tmp_path):
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium; `make` installs it)")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-extensions",
               "--disable-dev-shm-usage", "--no-first-run",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
               *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_html_renders_in_a_headless_browser(run_folder, tmp_path):
    page = write_reports(run_folder)["html"]
    done = chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = DomCells()
    dom.feed(done.stdout)
    assert dom.body.get("data-rendered") == "ok", done.stdout[-3000:]
    assert set(dom.cells) == {("Add", "float32"), ("Add", "int64"), ("MatMul", "float16"),
                              ("MatMul", "float32"), ("Softmax", "float32"),
                              ("Conv", "float32"), ("Gather", "int64")}
    add = dom.cells[("Add", "float32")]
    assert "s-fail" in add["classes"]
    assert "12 ulp" in add["text"]
    assert "tol 1.2e-7" in add["text"]
    assert "Add.float32.1: fail" in add["title"]
    assert "s-crash" in dom.cells[("Conv", "float32")]["classes"]
    assert "inf ulp" in dom.cells[("MatMul", "float16")]["text"]
    assert "s-unsupported" in dom.cells[("Gather", "int64")]["classes"]
    # the worst cell is selected on load: its cases are in the details panel
    assert dom.cases == ["Conv.float32.0", "Conv.float32.1"]
    assert "worker died (signal 11)" in done.stdout
    assert "axis=1" in done.stdout
    assert dom.scripts == 2  # the hostile message stayed text
    assert FP16_REASON in done.stdout


def test_html_screenshot_is_not_empty(run_folder, tmp_path):
    page = write_reports(run_folder)["html"]
    shot = tmp_path / "report.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1280,900", page.as_uri(),
                    tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 10_000


def test_every_failure_status_is_a_regression_from_pass():
    assert all(classify("pass", status) == "regression" for status in FAILURES)
