"""Per-backend expectations: known failures as data (backend, op, dtype, kind, reason).

`conformance/expectations/<backend>.toml` holds the built-in backends' lists; a vendor passes
its own file with `--expectations`. An entry names an op, optionally a dtype and one case,
the status it is expected to have (kind) and why. Nothing is matched by pattern.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xpuport.conformance.results import FAILURES
from xpuport.errors import XpuportError

BUILTIN_DIR = Path(__file__).parent / "expectations"


class ExpectationsError(XpuportError):
    """An expectations file is unreadable or an entry is incomplete."""


@dataclass(frozen=True)
class Expectation:
    backend: str
    op: str
    kind: str  # the failing status expected: fail, error, crash or timeout
    reason: str
    dtype: str | None = None  # None: every dtype of the op
    case: str | None = None  # None: every case of the op (and dtype)
    suite: str | None = None  # None: every suite (ops, onnx, models)

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "reason": self.reason}


class Expectations:
    """Finds the most specific expectation for a case: case id, then op and dtype, then op."""

    def __init__(self, entries: Iterable[Expectation]) -> None:
        self.entries = tuple(entries)
        self._index = {(e.suite, e.op, e.dtype, e.case): e for e in self.entries}

    def find(self, op: str, dtype: str, case: str, suite: str = "ops") -> Expectation | None:
        for key in ((op, dtype, case), (op, None, case), (op, dtype, None), (op, None, None)):
            for scope in (suite, None):
                if (scope, *key) in self._index:
                    return self._index[(scope, *key)]
        return None


def load_expectations(backend: str, extra: Sequence[Path] = ()) -> Expectations:
    """The built-in list for `backend` (if any) and the entries of each extra file for it."""
    builtin = BUILTIN_DIR / f"{backend}.toml"
    files = ([builtin] if builtin.is_file() else []) + list(extra)
    return Expectations(e for path in files for e in _read(path, backend))


def _read(path: Path, backend: str) -> list[Expectation]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ExpectationsError(f"cannot read expectations {path}: {exc}",
                                "give a TOML file of [[expect]] tables") from exc
    tables = data.get("expect", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ExpectationsError(f"{path}: `expect` is not an array of tables",
                                "write each entry as an [[expect]] table")
    entries = []
    for number, raw in enumerate(tables, start=1):
        entry = _entry(path, number, raw, backend)
        if entry.backend == backend:
            entries.append(entry)
    return entries


def _entry(path: Path, number: int, raw: dict[str, str], backend: str) -> Expectation:
    where = f"{path} [[expect]] #{number}"
    missing = [key for key in ("op", "kind", "reason") if not str(raw.get(key, "")).strip()]
    if missing:
        raise ExpectationsError(f"{where} lacks {', '.join(missing)}",
                                "every entry needs op, kind and a written reason")
    if raw["kind"] not in FAILURES:
        raise ExpectationsError(f"{where}: kind '{raw['kind']}' is not one of {FAILURES}",
                                "state the failing status the case is expected to have")
    unknown = set(raw) - {"backend", "suite", "op", "dtype", "case", "kind", "reason"}
    if unknown:
        raise ExpectationsError(f"{where}: unknown keys {sorted(unknown)}",
                                "use backend, suite, op, dtype, case, kind and reason")
    return Expectation(raw.get("backend", backend), raw["op"], raw["kind"], raw["reason"],
                       raw.get("dtype"), raw.get("case"), raw.get("suite"))


def apply(status: str, expectation: Expectation | None) -> str:
    """The status a case is reported with, given what was expected of it."""
    if expectation is None:
        return status
    if status == "pass":
        return "xpass"
    if status == expectation.kind:
        return "xfail"
    return status  # failed otherwise than expected: shown as it is
