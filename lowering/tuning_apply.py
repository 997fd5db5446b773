"""compile's side of a tuning database: the records of the kernels being built, no others.

MetaSchedule's JSONDatabase parses every workload's module and every record's trace when it
opens a database: 1.6 s of each compile with a 372-record database here, also for a model
none of the records were made for. Each workload's line starts with its kernel's structural
hash, which compile can compute for its own kernels first: only the workloads that match are
taken, each with its fastest record (the one MetaScheduleApplyDatabase would pick), into an
in-memory database.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import tvm

from xpuport.errors import raised_in_pass
from xpuport.lowering.tuning import RECORDS, note_stale_baselines, unreadable_records
from xpuport.lowering.tuning_baseline import (
    Baseline,
    default_scheduled,
    read_baselines,
    scheduled_hash,
)


def workload_hashes(module: Any) -> dict[str, tuple[str, Any]]:
    """Each kernel of `module` as MetaSchedule keys it: its hash -> (its name, its module)."""
    from tvm.s_tir import meta_schedule as ms

    normalize = tvm.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    kernels = [(global_var.name_hint, normalize(function))
               for global_var, function in module.functions.items()
               if isinstance(function, tvm.tirx.PrimFunc)]
    return {ms.database.Workload(kernel).as_json()[0]: (name, kernel) for name, kernel in kernels}


# MetaSchedule's run time for a candidate that failed to build or run.
FAILED_RUN_S = 1e9


def _mean_seconds(record: list[Any]) -> float | None:
    """A record's measured time, read from its JSON ([trace, run_secs, target, args])."""
    run_secs = record[1] if len(record) > 1 else None
    if not run_secs or max(run_secs) >= FAILED_RUN_S:
        return None
    return float(sum(run_secs) / len(run_secs))


def matching_records(path: Path, module: Any, schedules: Any | None = None,
                     target: Any | None = None) -> Any:
    """An in-memory database of the best record in `path` for each of `module`'s kernels,
    where it beats the kernel's default `schedules` as measured by tune
    (tuning_baseline.py), and none where that measurement is stale; refused, naming the
    line, when a record no longer applies to its kernel. Only those records' traces are
    parsed (7 ms each here: 4.1 s for the 591 records of one model)."""
    from tvm.s_tir import meta_schedule as ms

    wanted = workload_hashes(module)
    keys = [json.loads(line)[0] if line.strip() else None
            for line in (path / RECORDS[0]).read_text().splitlines()]
    matched = {index: key for index, key in enumerate(keys) if key in wanted}
    baselines = read_baselines(path)  # a record must beat these where tune measured them
    stale = {key for key in matched.values()
             if _stale(baselines.get(key), wanted[key][1], schedules, target)}
    note_stale_baselines(sorted(wanted[key][0] for key in stale))
    best: dict[int, tuple[float, int, Any]] = {  # workload -> (seconds, line, record)
        index: (_to_beat(baselines.get(key), key in stale), 0, None)
        for index, key in matched.items()}
    for number, line in enumerate((path / RECORDS[1]).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        index, record = json.loads(line)
        seconds = _mean_seconds(record) if index in matched else None
        if seconds is not None and seconds < best[index][0]:
            best[index] = (seconds, number, record)
    database = ms.database.MemoryDatabase()
    broken = []
    for index, (_, number, record) in sorted(best.items()):
        if record is None:
            continue  # no record, or none faster than the default schedules
        workload = database.commit_workload(wanted[matched[index]][1])
        try:
            database.commit_tuning_record(ms.database.TuningRecord.from_json(record, workload))
        except (ValueError, TypeError, RuntimeError):  # TVM's errors included
            broken.append(number)
    if broken:
        raise raised_in_pass(unreadable_records(path, broken))
    return database


def _stale(baseline: Baseline | None, kernel: Any, schedules: Any | None,
           target: Any | None) -> bool:
    """Whether `baseline` timed another schedule than `schedules` give `kernel` now."""
    if baseline is None or baseline.schedule is None or schedules is None:
        return False
    with target or tvm.target.Target.current():
        return scheduled_hash(default_scheduled(kernel, schedules)) != baseline.schedule


def _to_beat(baseline: Baseline | None, stale: bool) -> float:
    """The time a record must beat: none beats a stale baseline's (its kernel keeps the
    default schedules until tune measures them again)."""
    if stale:
        return -math.inf
    return baseline.seconds if baseline is not None else math.inf


def apply_records(path: str, schedules: Any | None = None, target: Any | None = None) -> Any:
    """MetaScheduleApplyDatabase with the records of `path` that match the module's kernels
    and beat their default `schedules` for `target` (compile's, applied after)."""

    @tvm.transform.module_pass(opt_level=0, name="xpuport.ApplyTuningRecords")  # type: ignore[untyped-decorator]
    def apply(module: Any, _context: Any) -> Any:
        from tvm import relax

        with matching_records(Path(path), module, schedules, target):
            return relax.transform.MetaScheduleApplyDatabase()(module)

    return apply
