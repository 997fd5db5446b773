"""conformance/results.py: case results and the append-only results.jsonl of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from xpuport.conformance.results import (
    RESULTS_FILE,
    RUN_FILE,
    STATUSES,
    CaseResult,
    ResultsError,
    ResultsLog,
    read_results,
    read_run,
)


def _result(case: str = "Add.float32.scalar", status: str = "pass", **extra) -> CaseResult:
    op, dtype, _ = case.split(".")
    return CaseResult(case, "ops", op, "elementwise", dtype, status, **extra)


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / RESULTS_FILE


def test_append_writes_one_whole_line_per_result(path):
    log = ResultsLog(path)

    log.append(_result("Add.float32.a", max_abs=0.5, tolerance={"rtol": 1e-7}))
    log.append(_result("Add.float32.b", "fail", message="off"))

    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = data.decode().splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["case"] for line in lines] == ["Add.float32.a", "Add.float32.b"]
    assert json.loads(lines[0])["max_abs"] == 0.5


def test_results_round_trip(path):
    written = _result("Add.float16.x", "fail", max_abs=1.0, max_rel="inf", max_ulp=3.0,
                      mismatch_ratio=0.25, tolerance={"rtol": 1.0, "atol": 1.0, "basis": "b",
                                                      "override": None},
                      message="bad", expected={"kind": "fail", "reason": "r"}, seconds=0.5,
                      details={"inputs": {"x0": "float16[2]"}})
    ResultsLog(path).append(written)

    assert read_results(path) == [written]


def test_append_continues_an_existing_log(path):
    ResultsLog(path).append(_result("Add.float32.a"))
    ResultsLog(path).append(_result("Add.float32.b"))

    assert [r.case for r in read_results(path)] == ["Add.float32.a", "Add.float32.b"]


def test_append_refuses_infinities(path):
    # JSON has no infinity: the measures give "inf" as a string (tolerance.Errors.to_json)
    with pytest.raises(ValueError):
        ResultsLog(path).append(_result(max_abs=math.inf))


def _torn(path: Path) -> None:
    log = ResultsLog(path)
    log.append(_result("Add.float32.a"))
    log.append(_result("Add.float32.b"))
    whole = json.dumps(_result("Add.float32.c").to_json())
    with path.open("a", encoding="utf-8") as handle:
        handle.write(whole[: len(whole) // 2])  # a kill in the middle of a write


def test_a_torn_last_line_is_ignored_by_read_results(path):
    _torn(path)

    assert [r.case for r in read_results(path)] == ["Add.float32.a", "Add.float32.b"]


def test_reopening_the_log_drops_a_torn_last_line(path):
    _torn(path)

    log = ResultsLog(path)

    assert path.read_bytes().endswith(b"\n")
    assert len(path.read_text().splitlines()) == 2
    log.append(_result("Add.float32.c"))
    assert [r.case for r in read_results(path)] == ["Add.float32.a", "Add.float32.b",
                                                    "Add.float32.c"]


def test_reopening_a_log_of_only_a_torn_line_empties_it(path):
    path.write_text('{"case": "Add.fl', encoding="utf-8")

    ResultsLog(path)

    assert path.read_bytes() == b""


def test_opening_a_missing_log_creates_nothing_yet(path):
    ResultsLog(path)

    assert not path.exists()


def test_a_later_line_replaces_an_earlier_one(path):
    log = ResultsLog(path)
    log.append(_result("Add.float32.a", "crash"))
    log.append(_result("Add.float32.b", "pass"))
    log.append(_result("Add.float32.a", "pass", message="rerun"))

    results = {r.case: r for r in read_results(path)}

    assert len(results) == 2
    assert results["Add.float32.a"].status == "pass"
    assert results["Add.float32.a"].message == "rerun"


def test_blank_lines_are_skipped(path):
    line = json.dumps(_result("Add.float32.a").to_json())
    path.write_text(f"{line}\n\n   \n", encoding="utf-8")

    assert [r.case for r in read_results(path)] == ["Add.float32.a"]


def test_unknown_fields_are_ignored(path):
    data = {**_result("Add.float32.a").to_json(), "from_a_newer_xpuport": 1}
    path.write_text(json.dumps(data) + "\n", encoding="utf-8")

    assert [r.case for r in read_results(path)] == ["Add.float32.a"]


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        '{"case": "Add.float32.x"}',  # required fields missing
        json.dumps({**_result().to_json(), "status": "sideways"}),  # unknown status
        "[1, 2]",  # JSON, but not an object
    ],
    ids=["not_json", "incomplete", "unknown_status", "not_an_object"],
)
def test_a_malformed_middle_line_names_file_and_line(path, bad):
    good = json.dumps(_result("Add.float32.a").to_json())
    path.write_text(f"{good}\n{bad}\n{good}\n", encoding="utf-8")

    with pytest.raises(ResultsError) as raised:
        read_results(path)

    assert f"{path}:2" in raised.value.message
    assert raised.value.fix


def test_a_malformed_last_line_with_its_newline_is_an_error(path):
    good = json.dumps(_result("Add.float32.a").to_json())
    path.write_text(f"{good}\n{{not json\n", encoding="utf-8")

    with pytest.raises(ResultsError, match=":2 "):
        read_results(path)


def test_read_results_of_a_missing_file(path):
    with pytest.raises(ResultsError, match="does not exist"):
        read_results(path)


@pytest.mark.parametrize("status", STATUSES)
def test_every_known_status_is_accepted(status):
    assert _result(status=status).status == status


@pytest.mark.parametrize("status", ["passed", "PASS", "", "skip"])
def test_an_unknown_status_is_refused(status):
    with pytest.raises(ValueError, match="unknown status"):
        _result(status=status)


# --- run.json ---------------------------------------------------------------------------------


def test_read_run(tmp_path):
    run = {"backend": "ort", "profile": "onnxruntime/cpu", "suite": "ops"}
    (tmp_path / RUN_FILE).write_text(json.dumps(run), encoding="utf-8")

    assert read_run(tmp_path) == run


def test_read_run_of_a_missing_folder(tmp_path):
    folder = tmp_path / "nowhere"

    with pytest.raises(ResultsError, match=RUN_FILE) as raised:
        read_run(folder)

    assert str(folder) in raised.value.message


def test_read_run_of_a_folder_without_run_json(tmp_path):
    with pytest.raises(ResultsError, match=f"holds no {RUN_FILE}"):
        read_run(tmp_path)


def test_read_run_of_bad_json(tmp_path):
    (tmp_path / RUN_FILE).write_text('{"backend": ', encoding="utf-8")

    with pytest.raises(ResultsError, match="is not JSON"):
        read_run(tmp_path)


def test_read_run_of_json_that_is_not_an_object(tmp_path):
    (tmp_path / RUN_FILE).write_text("[1, 2]", encoding="utf-8")

    with pytest.raises(ResultsError, match="not a JSON object"):
        read_run(tmp_path)


def test_the_line_number_counts_blank_lines(path):
    good = json.dumps(_result("Add.float32.a").to_json())
    path.write_text(f"{good}\n\n{{not json\n", encoding="utf-8")

    with pytest.raises(ResultsError, match=f"{path}:3 "):
        read_results(path)
