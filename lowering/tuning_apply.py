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
from xpuport.lowering.tuning import RECORDS, unreadable_records
from xpuport.lowering.tuning_baseline import read_baselines


def workload_hashes(module: Any) -> dict[str, Any]:
    """Each kernel of `module` as MetaSchedule keys it: its hash -> the kernel's module."""
    from tvm.s_tir import meta_schedule as ms

    normalize = tvm.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    kernels = [normalize(function) for function in module.functions.values()
               if isinstance(function, tvm.tirx.PrimFunc)]
    return {ms.database.Workload(kernel).as_json()[0]: kernel for kernel in kernels}


# MetaSchedule's run time for a candidate that failed to build or run.
FAILED_RUN_S = 1e9


def _mean_seconds(record: list[Any]) -> float | None:
    """A record's measured time, read from its JSON ([trace, run_secs, target, args])."""
    run_secs = record[1] if len(record) > 1 else None
    if not run_secs or max(run_secs) >= FAILED_RUN_S:
        return None
    return float(sum(run_secs) / len(run_secs))


def matching_records(path: Path, module: Any) -> Any:
    """An in-memory database of the best record in `path` for each of `module`'s kernels,
    where it beats the kernel's default schedules as measured by tune (tuning_baseline.py);
    refused, naming the line, when one no longer applies to its kernel. Only those records'
    traces are parsed (7 ms each here: 4.1 s for the 591 records of one model)."""
    from tvm.s_tir import meta_schedule as ms

    wanted = workload_hashes(module)
    keys = [json.loads(line)[0] if line.strip() else None
            for line in (path / RECORDS[0]).read_text().splitlines()]
    matched = {index: key for index, key in enumerate(keys) if key in wanted}
    baselines = read_baselines(path)  # a record must beat these where tune measured them
    best: dict[int, tuple[float, int, Any]] = {  # workload -> (seconds, line, record)
        index: (baselines.get(key, math.inf), 0, None) for index, key in matched.items()}
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
        workload = database.commit_workload(wanted[matched[index]])
        try:
            database.commit_tuning_record(ms.database.TuningRecord.from_json(record, workload))
        except (ValueError, TypeError, RuntimeError):  # TVM's errors included
            broken.append(number)
    if broken:
        raise raised_in_pass(unreadable_records(path, broken))
    return database


def apply_records(path: str) -> Any:
    """MetaScheduleApplyDatabase with the records of `path` that match the module's kernels."""

    @tvm.transform.module_pass(opt_level=0, name="xpuport.ApplyTuningRecords")  # type: ignore[untyped-decorator]
    def apply(module: Any, _context: Any) -> Any:
        from tvm import relax

        with matching_records(Path(path), module):
            return relax.transform.MetaScheduleApplyDatabase()(module)

    return apply
