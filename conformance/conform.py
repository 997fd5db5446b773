"""A conformance run: select the cases, resume or start the folder, run, record, report."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpuport.backends.base import Backend, TvmBackend
from xpuport.conformance.cases import Case, describe, spec_cases
from xpuport.conformance.evaluate import Outcome
from xpuport.conformance.expectations import Expectations, apply, load_expectations
from xpuport.conformance.ops import all_specs, select
from xpuport.conformance.results import (
    RESULTS_FILE,
    RUN_FILE,
    CaseResult,
    ResultsError,
    ResultsLog,
    read_results,
    read_run,
    write_atomic,
)
from xpuport.conformance.runner import Runner, RunOptions
from xpuport.errors import DeviceUnavailableError, TuningError
from xpuport.hw_profiles import HardwareProfile
from xpuport.hw_profiles.profile import KNOWN_DTYPES
from xpuport.lowering.artifact import environment_versions
from xpuport.lowering.tuning import named_database

SUITES = ("ops", "onnx", "models")
WORKER_LOG = "workers.log"  # what TVM and the backend print, kept out of the terminal
OnResult = Callable[[CaseResult], None]


@dataclass(frozen=True)
class ConformRequest:
    backend: str
    out: Path
    profile: str | None = None
    suite: str = "ops"
    ops: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    resume: bool = False
    options: RunOptions = field(default_factory=RunOptions)
    expectations: tuple[Path, ...] = ()


def suite_cases(suite: str, ops: Sequence[str], dtypes: Sequence[str]) -> list[Case]:
    """The cases of a suite, filtered by op and dtype; unknown names are refused."""
    _check_dtypes(dtypes)
    if suite == "ops":
        _check_names(ops, {spec.op for spec in all_specs()}, "the ops database")
        return [c for spec in select(ops) for c in spec_cases(spec, dtypes or None)]
    if suite == "onnx":
        from xpuport.conformance.onnx_suite import onnx_cases

        cases = [c for c in onnx_cases(set(ops) or None) if not dtypes or c.dtype in dtypes]
        _check_names(ops, {c.op for c in cases} | {c.case_id for c in cases}, "the ONNX tests")
        return cases
    if suite == "models":
        from xpuport.conformance.models_suite import model_cases

        return [c for c in model_cases(ops) if not dtypes or c.dtype in dtypes]
    raise ResultsError(f"unknown suite '{suite}'", f"pass --suite {' | '.join(SUITES)}")


def _check_names(wanted: Sequence[str], known: set[str], where: str) -> None:
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise ResultsError(f"--ops names {', '.join(unknown)}, not in {where}",
                           "see `xpuport conform --list` for the ops of each suite")


def _check_dtypes(dtypes: Sequence[str]) -> None:
    unknown = sorted(set(dtypes) - set(KNOWN_DTYPES))
    if unknown:
        raise ResultsError(f"--dtypes names unknown dtypes {', '.join(unknown)}",
                           f"choose from {', '.join(KNOWN_DTYPES)}")


def prepare_folder(request: ConformRequest, run_info: dict[str, Any]) -> set[str]:
    """Start `out` (refusing to mix runs) or resume it; returns the ids already done."""
    out, results = request.out, request.out / RESULTS_FILE
    if request.resume:
        previous = read_run(out)
        for key in ("backend", "profile", "suite", "fallback"):
            if previous.get(key, False) != run_info[key]:
                raise ResultsError(
                    f"{out} holds a run with {key} '{previous.get(key)}', not '{run_info[key]}'",
                    "resume with the same --backend, --profile, --suite and --fallback, or use "
                    "a new --out")
        return {r.case for r in read_results(results)} if results.exists() else set()
    if results.exists():
        raise ResultsError(f"{out} already holds results of a run",
                           "pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / RUN_FILE, json.dumps(run_info, indent=2))
    return set()


def run_info(backend: Backend, profile: HardwareProfile, request: ConformRequest) -> dict[str, Any]:
    return {
        "backend": backend.name,
        "profile": profile.name,
        "suite": request.suite,
        "backend_cache_key": backend.cache_key(profile),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": environment_versions(),
        "filters": {"ops": list(request.ops), "dtypes": list(request.dtypes)},
        "fallback": request.options.fallback,
        "library": request.options.library,
        "tuning_db": request.options.tuning_db,
    }


class Recorder:
    """Turns outcomes into results: expectations applied, details added, appended to disk."""

    def __init__(self, log: ResultsLog, expectations: Expectations,
                 on_result: OnResult | None) -> None:
        self.log, self.expectations, self.on_result = log, expectations, on_result

    def __call__(self, case: Case, outcome: Outcome) -> None:
        expectation = self.expectations.find(case.op, case.dtype, case.case_id, case.suite)
        status = apply(outcome.status, expectation)  # unsupported stays unsupported
        errors = outcome.errors or {}
        result = CaseResult(
            case.case_id, case.suite, case.op, case.family, case.dtype, status,
            errors.get("max_abs"), errors.get("max_rel"), errors.get("max_ulp"),
            errors.get("mismatch_ratio"), case.tolerance.to_json(), outcome.message,
            expectation.to_json() if expectation and status in ("xfail", "xpass") else None,
            round(outcome.seconds, 4),
            {**describe(case), **({"placement": outcome.placement} if outcome.placement else {})})
        self.log.append(result)
        if self.on_result:
            self.on_result(result)


def check_tuning_db(backend: Backend, profile: HardwareProfile, tuning_db: str | None) -> None:
    """Refused before any case runs: a database the backend does not apply, none at the path,
    or one made for another profile or TVM."""
    if tuning_db is None:
        return
    if not (isinstance(backend, TvmBackend) and backend.applies_tuning):
        raise TuningError(f"backend '{backend.name}' applies no tuning records",
                          "drop --tuning-db, or conform a backend that tunes (cpu)")
    named_database(Path(tuning_db), profile, backend.target(profile))


def check_device(backend: Backend) -> None:
    """Refuse at once: without the device, every case would be built and then fail to run."""
    if not backend.is_available():
        raise DeviceUnavailableError(
            f"backend '{backend.name}' has no device on this machine, and a conformance run "
            "executes every case on it",
            f"run it where the device is; `xpuport compile --backend {backend.name}` checks "
            "here that a model builds",
        )


def conform(request: ConformRequest, backend: Backend, profile: HardwareProfile,
            on_start: Callable[[int], None] | None = None,
            on_result: OnResult | None = None) -> list[CaseResult]:
    """Run the request's cases that are not done yet; returns every result of the folder."""
    check_device(backend)
    check_tuning_db(backend, profile, request.options.tuning_db)
    cases = suite_cases(request.suite, request.ops, request.dtypes)
    done = prepare_folder(request, run_info(backend, profile, request))
    todo = [case for case in cases if case.case_id not in done]
    if on_start:
        on_start(len(todo))
    record = Recorder(ResultsLog(request.out / RESULTS_FILE),
                      load_expectations(backend.name, request.expectations), on_result)
    runnable = []
    for case in todo:  # what the backend declines is found by the workers, after decomposition
        if case.declined:
            record(case, Outcome(case.case_id, "unsupported", message=case.declined))
        else:
            runnable.append(case)
    Runner(backend.name, profile.name, request.options, record,
           request.out / WORKER_LOG).run(runnable)
    return read_results(request.out / RESULTS_FILE)
