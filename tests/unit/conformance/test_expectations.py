"""conformance/expectations.py: known failures as data, matched most specific first."""

from __future__ import annotations

from pathlib import Path

import pytest

from xpuport.conformance.expectations import (
    BUILTIN_DIR,
    Expectation,
    Expectations,
    ExpectationsError,
    apply,
    load_expectations,
)
from xpuport.conformance.results import FAILURES

BACKEND = "vendor"  # no built-in list: only the files a test writes are read

ENTRIES = """
[[expect]]
op = "Add"
kind = "fail"
reason = "every Add is off by the vendor's rounding"

[[expect]]
op = "Add"
dtype = "float16"
kind = "error"
reason = "no float16 Add kernel in the vendor library"

[[expect]]
op = "Add"
dtype = "float16"
case = "Add.float16.scalar"
kind = "crash"
reason = "rank-0 tensors crash the vendor runtime"

[[expect]]
op = "Exp"
case = "Exp.float32.special_values"
kind = "fail"
reason = "exp of nan returns zero on this device"
"""


def _write(tmp_path: Path, text: str, name: str = "expect.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def expectations(tmp_path) -> Expectations:
    return load_expectations(BACKEND, [_write(tmp_path, ENTRIES)])


def test_load_reads_every_entry(expectations):
    entries = expectations.entries

    assert len(entries) == 4
    assert {entry.backend for entry in entries} == {BACKEND}
    first, _, by_case, exp = entries
    assert (first.op, first.dtype, first.case, first.kind) == ("Add", None, None, "fail")
    assert first.reason == "every Add is off by the vendor's rounding"
    assert (by_case.dtype, by_case.case) == ("float16", "Add.float16.scalar")
    assert (exp.dtype, exp.case) == (None, "Exp.float32.special_values")


def test_the_case_entry_wins(expectations):
    found = expectations.find("Add", "float16", "Add.float16.scalar")

    assert found is not None
    assert found.kind == "crash"


def test_op_and_dtype_win_over_op(expectations):
    found = expectations.find("Add", "float16", "Add.float16.same_shape")

    assert found is not None
    assert found.kind == "error"


def test_op_alone_covers_every_other_dtype(expectations):
    found = expectations.find("Add", "float32", "Add.float32.scalar")

    assert found is not None
    assert found.kind == "fail"
    assert found.dtype is None


def test_a_case_entry_without_dtype_matches_its_case_only(expectations):
    found = expectations.find("Exp", "float32", "Exp.float32.special_values")

    assert found is not None
    assert found.case == "Exp.float32.special_values"
    assert expectations.find("Exp", "float32", "Exp.float32.tensor") is None


def test_no_entry_no_expectation(expectations):
    assert expectations.find("Mul", "float32", "Mul.float32.scalar") is None


def test_to_json_is_kind_and_reason(expectations):
    found = expectations.find("Add", "float32", "Add.float32.scalar")

    assert found is not None
    assert found.to_json() == {"kind": "fail",
                               "reason": "every Add is off by the vendor's rounding"}


def test_entries_for_another_backend_are_ignored(tmp_path):
    path = _write(tmp_path, """
[[expect]]
backend = "other"
op = "Add"
kind = "fail"
reason = "only the other backend fails this"

[[expect]]
backend = "vendor"
op = "Mul"
kind = "timeout"
reason = "the vendor's Mul hangs on empties"
""")

    loaded = load_expectations(BACKEND, [path])

    assert [entry.op for entry in loaded.entries] == ["Mul"]
    assert loaded.find("Add", "float32", "Add.float32.scalar") is None
    assert load_expectations("other", [path]).find("Add", "float32", "x") is not None


def test_several_files_are_read(tmp_path):
    first = _write(tmp_path, '[[expect]]\nop = "Add"\nkind = "fail"\nreason = "first file"\n',
                   "a.toml")
    second = _write(tmp_path, '[[expect]]\nop = "Mul"\nkind = "error"\nreason = "second file"\n',
                    "b.toml")

    loaded = load_expectations(BACKEND, [first, second])

    assert [entry.op for entry in loaded.entries] == ["Add", "Mul"]


def test_a_file_without_entries_is_empty(tmp_path):
    assert load_expectations(BACKEND, [_write(tmp_path, "# nothing yet\n")]).entries == ()


# --- apply ------------------------------------------------------------------------------------


def _expect(kind: str) -> Expectation:
    return Expectation(BACKEND, "Add", kind, "a reason for the test")


@pytest.mark.parametrize("kind", FAILURES)
def test_a_pass_that_was_expected_to_fail_is_xpass(kind):
    assert apply("pass", _expect(kind)) == "xpass"


@pytest.mark.parametrize("kind", FAILURES)
def test_the_expected_failure_is_xfail(kind):
    assert apply(kind, _expect(kind)) == "xfail"


@pytest.mark.parametrize(("status", "kind"), [("crash", "fail"), ("fail", "error"),
                                              ("timeout", "crash"), ("error", "timeout")])
def test_a_different_failure_stays_as_it_is(status, kind):
    assert apply(status, _expect(kind)) == status


@pytest.mark.parametrize("status", ["pass", "fail", "error", "crash", "timeout", "unsupported"])
def test_no_expectation_leaves_the_status(status):
    assert apply(status, None) == status


def test_unsupported_is_not_turned_into_xfail():
    assert apply("unsupported", _expect("fail")) == "unsupported"


# --- errors -----------------------------------------------------------------------------------


def _error(tmp_path: Path, text: str) -> ExpectationsError:
    path = _write(tmp_path, text)
    with pytest.raises(ExpectationsError) as raised:
        load_expectations(BACKEND, [path])
    assert str(path) in raised.value.message
    assert raised.value.fix
    return raised.value


GOOD = '[[expect]]\nop = "Mul"\nkind = "fail"\nreason = "a good first entry"\n\n'


def test_missing_reason_is_an_error_naming_the_entry(tmp_path):
    error = _error(tmp_path, GOOD + '[[expect]]\nop = "Add"\nkind = "fail"\n')

    assert "[[expect]] #2" in error.message
    assert "reason" in error.message


def test_blank_reason_is_an_error(tmp_path):
    error = _error(tmp_path, '[[expect]]\nop = "Add"\nkind = "fail"\nreason = "  "\n')

    assert "#1" in error.message
    assert "reason" in error.message


def test_missing_op_is_an_error(tmp_path):
    error = _error(tmp_path, '[[expect]]\nkind = "fail"\nreason = "no op named here"\n')

    assert "op" in error.message


@pytest.mark.parametrize("kind", ["xfail", "pass", "broken"])
def test_unknown_kind_is_an_error(tmp_path, kind):
    error = _error(tmp_path, f'[[expect]]\nop = "Add"\nkind = "{kind}"\nreason = "why not"\n')

    assert "#1" in error.message
    assert f"'{kind}'" in error.message


def test_unknown_key_is_an_error(tmp_path):
    error = _error(tmp_path, GOOD + '[[expect]]\nop = "Add"\nkind = "fail"\nreason = "r r r"\n'
                   'dtypes = "float32"\n')

    assert "#2" in error.message
    assert "dtypes" in error.message


def test_unreadable_toml_is_an_error(tmp_path):
    error = _error(tmp_path, '[[expect]]\nop = "Add\nkind = fail\n')

    assert "cannot read" in error.message


def test_a_missing_file_is_an_error(tmp_path):
    path = tmp_path / "absent.toml"

    with pytest.raises(ExpectationsError, match=r"absent\.toml"):
        load_expectations(BACKEND, [path])


@pytest.mark.parametrize("text", ['[expect]\nop = "Add"\nkind = "fail"\nreason = "one table"\n',
                                  'expect = "Add"\n'], ids=["table", "string"])
def test_expect_that_is_not_an_array_of_tables_is_an_error(tmp_path, text):
    _error(tmp_path, text)


# --- the built-in lists -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["cpu", "ort"])
def test_the_builtin_lists_load(backend):
    assert (BUILTIN_DIR / f"{backend}.toml").is_file()

    loaded = load_expectations(backend)

    assert all(entry.backend == backend for entry in loaded.entries)
    assert all(entry.kind in FAILURES and entry.reason.strip() for entry in loaded.entries)


def test_builtin_and_extra_files_are_combined(tmp_path):
    extra = _write(tmp_path, '[[expect]]\nbackend = "cpu"\nop = "Foo"\nkind = "fail"\n'
                   'reason = "a vendor-side entry"\n')

    builtin = load_expectations("cpu")
    combined = load_expectations("cpu", [extra])

    assert combined.entries == (*builtin.entries, combined.entries[-1])
    assert combined.entries[-1].op == "Foo"


def test_an_entry_scoped_to_a_suite_matches_that_suite_only(tmp_path):
    path = _write(tmp_path, '[[expect]]\nsuite = "ops"\nop = "Add"\nkind = "fail"\n'
                  'reason = "seen in the ops suite only"\n')
    expectations = load_expectations(BACKEND, [path])
    assert expectations.find("Add", "float32", "Add.float32.a", "ops") is not None
    assert expectations.find("Add", "float32", "test_add", "onnx") is None


@pytest.mark.parametrize("backend", sorted(p.stem for p in BUILTIN_DIR.glob("*.toml")))
def test_each_builtin_list_loads_and_names_its_cases_consistently(backend):
    entries = load_expectations(backend).entries
    assert entries, f"{backend}.toml has no entries"
    for entry in entries:
        assert entry.case is None or entry.case.startswith(f"{entry.op}.{entry.dtype or ''}")
