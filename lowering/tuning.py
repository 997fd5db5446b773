"""Tuning databases: MetaSchedule records for one profile, made by `xpuport tune`, applied by
`compile`, shared as a folder.

A database is a folder: MetaSchedule's two JSON files (workloads and tuning records, keyed by
the structural hash of each kernel) and `xpuport-tuning.json`, which names the profile, the
target and the TVM version the records were measured with. A database made for another
profile, target or TVM is refused, never half-applied. Measurement goes through TVM's own
runner (`local` here), so the same search can run on a remote device over RPC; candidates are
built in a pool kept for the whole run (tuning_builder.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm

from xpuport.errors import TuningError
from xpuport.hw_profiles import HardwareProfile
from xpuport.lowering.collect import collecting, note
from xpuport.lowering.library_choice import CHOICES, LibraryChoice
from xpuport.lowering.tuning_baseline import BASELINES, measure_baselines, save_baselines

META = "xpuport-tuning.json"
# 2: kernels' blocks named b0, b1... (cpu_schedules.canonical_block_names). Records made
# before name blocks after the model's values; adding new ones to them breaks the database.
FORMAT = 2
RECORDS = ("database_workload.json", "database_tuning_record.json")
TUNING_DIR_ENV = "XPUPORT_TUNING_DIR"


def default_database(profile: HardwareProfile) -> Path:
    """Where `tune` writes and `compile` looks for a profile's records by default."""
    from xpuport.cache import cache_root

    root = os.environ.get(TUNING_DIR_ENV)
    return (Path(root) if root else cache_root() / "tuning") / profile.name


@dataclass(frozen=True)
class TuningDatabase:
    path: Path
    profile: str
    target: str
    tvm: str

    def digest(self) -> str:
        """Changes whenever a record is added: part of every tuned artifact's identity."""
        digest = hashlib.sha256()
        for name in (META, *RECORDS, BASELINES, CHOICES):
            file = self.path / name
            digest.update(file.read_bytes() if file.is_file() else b"")
        return digest.hexdigest()[:16]

    def records(self) -> int:
        """How many measured candidates the database holds (one JSON line each)."""
        file = self.path / RECORDS[1]
        if not file.is_file():
            return 0
        with file.open("rb") as lines:
            return sum(1 for line in lines if line.strip())

    def meta_schedule(self) -> Any:
        return load_records(self.path)


def load_records(path: Path) -> Any:
    """MetaSchedule's database of the records in `path`; refused, naming the records to drop,
    when a record no longer applies to its kernel (MetaSchedule then reads none of them)."""
    from tvm.s_tir import meta_schedule as ms

    try:
        return ms.database.JSONDatabase(work_dir=str(path))
    except Exception as exc:  # TVM raises RuntimeError and its own types: all mean unreadable
        raise unreadable_records(path, unreplayable_records(path),
                                 f"MetaSchedule cannot read it ({str(exc).strip()[:200]})"
                                 ) from exc


def unreadable_records(path: Path, lines: list[int], otherwise: str = "") -> TuningError:
    """The error for records of `path` that do not apply to their kernel, by line (or,
    with no line found, `otherwise`)."""
    what = (f"records on lines {', '.join(map(str, lines))} do not apply to their kernel"
            if lines else otherwise)
    return TuningError(f"{path / RECORDS[1]}: {what}",
                       "delete those lines (or the whole folder and retune); "
                       "`compile --no-tuning` builds without records meanwhile")


def unreplayable_records(path: Path) -> list[int]:
    """1-based lines of the records file whose schedule fails on the kernel they name."""
    from tvm.s_tir import meta_schedule as ms

    workloads = (path / RECORDS[0]).read_text().splitlines()
    parsed: dict[int, Any] = {}
    broken = []
    for number, line in enumerate((path / RECORDS[1]).read_text().splitlines(), start=1):
        try:
            index, record = json.loads(line)
            if index not in parsed:
                parsed[index] = ms.database.Workload.from_json(json.loads(workloads[index]))
            ms.database.TuningRecord.from_json(record, parsed[index])
        except (ValueError, TypeError, IndexError, RuntimeError):  # TVM's errors included
            broken.append(number)
    return broken


def open_database(path: Path, profile: HardwareProfile, target: Any) -> TuningDatabase | None:
    """The database at `path` if one is there; refused if made for another profile or TVM."""
    meta_file = path / META
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        database = TuningDatabase(path, meta["profile"], meta["target"], meta["tvm"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise TuningError(f"{meta_file}: not an xpuport tuning database ({exc})",
                          "remove the folder, or retune with `xpuport tune`") from exc
    if meta.get("format") != FORMAT:
        raise TuningError(
            f"{path}: tuning records of an older xpuport (database format "
            f"{meta.get('format', 1)}, this one reads {FORMAT}): its kernels named their "
            "blocks differently, and records added now would not load",
            f"retune into a new folder: `xpuport tune MODEL --profile {profile.name} --db "
            "NEW_DIR`, or delete this one; pass --no-tuning to compile without records")
    expected = (profile.name, str(target), tvm.__version__)
    found = (database.profile, database.target, database.tvm)
    if found != expected:
        raise TuningError(
            f"{path}: tuning records for profile {found[0]} (target {found[1]}, TVM {found[2]}); "
            f"this compile is for {expected[0]} (target {expected[1]}, TVM {expected[2]})",
            f"retune: `xpuport tune MODEL --profile {profile.name} --db NEW_DIR`, or pass "
            "--no-tuning to compile without records")
    return database


def named_database(path: Path, profile: HardwareProfile, target: Any) -> TuningDatabase:
    """The database a user named (--tuning-db): refused when none is there."""
    database = open_database(path, profile, target)
    if database is None:
        raise TuningError(f"{path}: no tuning database there",
                          "make one with `xpuport tune MODEL --db DIR`, or drop --tuning-db")
    return database


def create_database(path: Path, profile: HardwareProfile, target: Any) -> TuningDatabase:
    existing = open_database(path, profile, target)
    if existing is not None:
        return existing
    if path.exists() and any(path.iterdir()):
        raise TuningError(f"{path} exists and is not a tuning database",
                          "give --db an empty or new folder")
    path.mkdir(parents=True, exist_ok=True)
    meta = {"profile": profile.name, "target": str(target), "tvm": tvm.__version__,
            "format": FORMAT}
    (path / META).write_text(json.dumps(meta, indent=2) + "\n")
    return TuningDatabase(path, profile.name, str(target), tvm.__version__)


# Set on a kernel by MetaScheduleApplyDatabase, and by the default schedules after it.
SCHEDULED_ATTR = "tirx.is_scheduled"
_TUNED_KERNELS: ContextVar[list[str] | None] = ContextVar("xpuport_tuned_kernels", default=None)
_STALE_BASELINES: ContextVar[list[str] | None] = ContextVar("xpuport_stale_baselines",
                                                            default=None)


def collecting_tuned_kernels() -> AbstractContextManager[list[str]]:
    """The names of the kernels that tuning records schedule in the builds run inside."""
    return collecting(_TUNED_KERNELS)


def collecting_stale_baselines() -> AbstractContextManager[list[str]]:
    """The kernels whose records were not applied in the builds run inside: their baselines
    timed another default schedule than this xpuport's (tuning_baseline.py)."""
    return collecting(_STALE_BASELINES)


def note_stale_baselines(names: list[str]) -> None:
    note(_STALE_BASELINES, names)


def note_tuned_kernels() -> Any:
    """A pass to run right after MetaScheduleApplyDatabase: the kernels scheduled by then are
    the ones it found records for. It notes their names in the active collection, so that
    `compile` lists them without fusing the model a second time to ask the database."""

    @tvm.transform.module_pass(opt_level=0, name="xpuport.NoteTunedKernels")  # type: ignore[untyped-decorator]
    def note_scheduled(module: Any, _context: Any) -> Any:
        note(_TUNED_KERNELS, (global_var.name_hint
                              for global_var, function in module.functions.items()
                              if isinstance(function, tvm.tirx.PrimFunc) and function.attrs
                              and function.attrs.get(SCHEDULED_ATTR)))
        return module

    return note_scheduled


# Generous: a build or run of one candidate on a loaded 2-core host, never a whole batch.
WORKER_TIMEOUT_S = 300.0


def _builder(target: Any) -> Any:
    from xpuport.lowering.tuning_builder import PooledBuilder

    cores = int(target.attrs.get("num-cores", 0)) or os.cpu_count() or 1
    return PooledBuilder(workers=cores, timeout_s=WORKER_TIMEOUT_S)


def _runner() -> Any:
    from tvm.s_tir import meta_schedule as ms

    return ms.runner.LocalRunner(timeout_sec=WORKER_TIMEOUT_S)


def _search_strategy() -> Any:
    """MetaSchedule's evolutionary search with a smaller population than its default 512, so
    that a small host spends its budget measuring candidates rather than evolving them."""
    from tvm.s_tir import meta_schedule as ms

    return ms.search_strategy.EvolutionarySearch(population_size=128, genetic_num_iters=2)


def measured_target(target: Any) -> Any:
    """MetaSchedule's CPU search needs the core count it may parallelize over."""
    if target.kind.name != "llvm" or "num-cores" in target.attrs:
        return target
    import psutil  # type: ignore[import-untyped]  # a MetaSchedule dependency

    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return tvm.target.Target({**dict(target.export()), "num-cores": cores})


@dataclass(frozen=True)
class TuneResult:
    database: Path
    tasks: int
    trials: int
    seconds: float
    out_of_budget: bool  # the budget, not the trial count or the search space, ended the run
    library_choice: LibraryChoice | None = None  # measured where both sides were tuned

    @classmethod
    def combined(cls, database: Path, results: list[TuneResult]) -> TuneResult:
        """One run's total over the searches it made, one after the other."""
        return cls(database, sum(r.tasks for r in results), sum(r.trials for r in results),
                   sum(r.seconds for r in results), any(r.out_of_budget for r in results))


def trials_per_batch(trials: int, tasks: int) -> int:
    """Candidates measured per batch. Every kernel gets one batch before the task scheduler
    chooses by progress: that first pass takes half of `trials`, so the other half goes to
    the kernels that improve most; at most MetaSchedule's 64."""
    return max(1, min(64, trials // (2 * tasks)))


def heaviest_first(tasks: list[Any]) -> list[Any]:
    """Kernels by arithmetic times calls, most first: the first pass gives them their first
    batch in this order, and a budget may run out during it."""
    from tvm.s_tir.analysis import estimate_tir_flops

    return sorted(tasks, key=lambda task: -estimate_tir_flops(task.mod) * task.weight)


def tune_module(module: Any, target: Any, database: TuningDatabase, trials: int,
                budget: float | None, on_progress: Callable[[int, str], None],
                schedules: Any | None = None) -> TuneResult:
    """MetaSchedule over every kernel of `module` (legalized and fused): one search, whose
    task scheduler shares `trials` among the kernels by their progress, stopped by `budget`
    seconds (tuning_search.py). A kernel MetaSchedule has no more candidates for (an
    elementwise or layout kernel gets one) retires early; a module of library calls alone gives
    an empty result. The result counts the candidates
    measured; `on_progress` hears after each batch. `schedules`, compile's default schedules,
    is then measured on every kernel too, so compile applies only records that beat it
    (tuning_baseline.py)."""
    from tvm.s_tir import meta_schedule as ms

    from xpuport.lowering.tuning_search import (
        BudgetedSearch,
        ReportProgress,
        search_log_off_stdout,
        target_intrinsics_only,
        unnamed_log_handlers_set_aside,
    )

    target = measured_target(target)
    extracted = heaviest_first(ms.relax_integration.extract_tasks(module, target))
    if not extracted:  # every kernel is a library call
        return TuneResult(database.path, 0, 0, 0.0, False)
    started, before = time.monotonic(), database.records()
    deadline = None if budget is None else started + budget
    builder, runner = _builder(target), _runner()
    try:
        with (tvm.transform.PassContext(opt_level=3), target_intrinsics_only(target),
              unnamed_log_handlers_set_aside(), search_log_off_stdout()):
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                extracted, str(database.path),
                strategy=BudgetedSearch(_search_strategy(), deadline))
            ms.tune.tune_tasks(
                tasks=contexts, task_weights=weights, work_dir=str(database.path),
                max_trials_global=trials,
                num_trials_per_iter=trials_per_batch(trials, len(contexts)),
                database=database.meta_schedule(), builder=builder, runner=runner,
                measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                                   ReportProgress(on_progress)])
        searched = time.monotonic()
        if schedules is not None:
            save_baselines(database.path,
                           measure_baselines(contexts, schedules, target, builder, runner))
    finally:
        builder.shutdown()
    return TuneResult(database.path, len(extracted), database.records() - before,
                      time.monotonic() - started, deadline is not None and searched >= deadline)
