"""Case results, their statuses, and the append-only results.jsonl a run writes as it goes."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xpuport.errors import XpuportError

STATUSES = ("pass", "fail", "unsupported", "error", "crash", "timeout", "xfail", "xpass")
# Statuses that fail a run unless an expectation covers them (then they become xfail).
FAILURES = ("fail", "error", "crash", "timeout")
RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class CaseResult:
    """One line of results.jsonl: a case's status, its errors and the tolerance used."""

    case: str  # stable id: <op>.<dtype>.<sample> for the ops suite, the test name otherwise
    suite: str
    op: str
    family: str
    dtype: str
    status: str
    max_abs: float | str | None = None  # str: "inf" (JSON has no infinity)
    max_rel: float | str | None = None
    max_ulp: float | str | None = None
    mismatch_ratio: float | None = None
    tolerance: dict[str, Any] | None = None  # rtol, atol, basis, override (reason or null)
    message: str = ""
    expected: dict[str, str] | None = None  # the expectation (kind, reason) that matched
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # inputs, attributes

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaseResult:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


class ResultsError(XpuportError):
    """A results folder or file cannot be read or continued."""


class ResultsLog:
    """results.jsonl, appended one whole line per write so a killed run loses no result."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _drop_torn_tail(path)

    def append(self, result: CaseResult) -> None:
        line = (json.dumps(result.to_json(), allow_nan=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write(2) with O_APPEND: never interleaved, never torn
        finally:
            os.close(fd)


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line that a kill left unfinished; every earlier line is whole."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def read_results(path: Path) -> list[CaseResult]:
    """Every result of a results.jsonl; a later line for the same case replaces an earlier."""
    if not path.is_file():
        raise ResultsError(f"{path} does not exist", "point at the --out folder of a conform run")
    text = path.read_text(encoding="utf-8")
    # numbered as in the file (blank lines count), blank lines skipped
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    torn = not text.endswith("\n")
    by_case: dict[str, CaseResult] = {}
    for number, line in lines:
        try:
            result = CaseResult.from_json(json.loads(line))
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            if torn and number == lines[-1][0]:
                break  # the torn last line of a killed run
            raise ResultsError(f"{path}:{number} is not a case result: {exc}",
                               "remove that line, or rerun the cases with --resume") from exc
        by_case[result.case] = result
    return list(by_case.values())


def read_run(folder: Path) -> dict[str, Any]:
    """run.json: the backend, profile, suite and versions of the run that wrote `folder`."""
    path = folder / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResultsError(f"{folder} holds no {RUN_FILE}",
                           "point at the --out folder of an `xpuport conform` run") from exc
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path} is not JSON: {exc}", "rerun the conformance run") from exc
    if not isinstance(data, dict):
        raise ResultsError(f"{path} is not a JSON object", "rerun the conformance run")
    return data


def write_atomic(path: Path, text: str) -> Path:
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
