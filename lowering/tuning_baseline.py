"""Each tuned kernel's time under compile's default schedules, so a record applies only where
it is faster.

MetaSchedule ranks its candidates against each other, never against what compile does
without a record (backends/cpu_schedules.py): a record slower than the default schedules
would make its kernel slower. `tune` measures each kernel's default schedule with the same
builder and runner as the candidates and keeps the times beside the records, by workload
hash (`xpuport-baselines.json`); compile then skips records that do not beat them.

A baseline holds for the default schedule it timed, which a newer xpuport may change (its
NCHW -> NHWC copy went from 660 to 150-240 us, faster than the record tune had kept for it).
So each baseline keeps the structural hash of the kernel as scheduled then; where compile's
default schedule hashes otherwise, the baseline is stale and the record is not applied:
compile names the kernel, and tuning again re-measures it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import tvm
import tvm_ffi

BASELINES = "xpuport-baselines.json"


class Baseline(NamedTuple):
    seconds: float
    # structural_hash of the kernel as the default schedules left it (scheduled_hash); None
    # in databases tuned before baselines kept it, which are taken as current.
    schedule: str | None = None


def read_baselines(database: Path) -> dict[str, Baseline]:
    """Workload hash -> its default schedule's time; empty for databases without them."""
    file = database / BASELINES
    entries = json.loads(file.read_text()) if file.is_file() else {}
    return {key: Baseline(float(value)) if isinstance(value, int | float)
            else Baseline(float(value["seconds"]), value.get("schedule"))
            for key, value in entries.items()}


def default_scheduled(kernel: Any, schedules: Any) -> Any:
    """`kernel` as `schedules` leave it, the kernel itself untouched: TVM's passes change a
    module in place when nothing else holds it, and dlight's marks its functions scheduled
    (compile would then take them for tuned)."""
    return schedules(tvm.ir.load_json(tvm.ir.save_json(kernel)))


def scheduled_hash(kernel: Any) -> str:
    """What tells one default schedule of a kernel from another, as text for JSON."""
    return str(tvm_ffi.structural_hash(kernel))


def measure_baselines(contexts: list[Any], schedules: Any, target: Any, builder: Any,
                      runner: Any) -> dict[str, Baseline]:
    """Each task's kernel scheduled by `schedules`, timed, by its workload hash; a kernel
    whose default schedule fails to build or run is left out (every record may apply)."""
    from tvm.s_tir import meta_schedule as ms

    hashes = [ms.database.Workload(context.mod).as_json()[0] for context in contexts]
    with target:
        kernels = [default_scheduled(context.mod, schedules) for context in contexts]
    built = builder.build([ms.builder.BuilderInput(kernel, target) for kernel in kernels])
    ran = [(key, kernel, result) for key, kernel, result in zip(hashes, kernels, built,
                                                                 strict=True)
           if result.error_msg is None]
    device = str(tvm.runtime.device(target.get_target_device_type(), 0)).split(":")[0]
    futures = runner.run([ms.runner.RunnerInput(result.artifact_path, device,
                                                ms.arg_info.ArgInfo.from_entry_func(kernel))
                          for _, kernel, result in ran])
    baselines = {}
    for (key, kernel, result), future in zip(ran, futures, strict=True):
        measured = future.result()
        if measured.error_msg is None and measured.run_secs:
            mean = sum(float(s) for s in measured.run_secs) / len(measured.run_secs)
            baselines[key] = Baseline(mean, scheduled_hash(kernel))
        shutil.rmtree(Path(result.artifact_path).parent, ignore_errors=True)
    return baselines


def save_baselines(database: Path, baselines: dict[str, Baseline]) -> None:
    """Merge `baselines` into the database's (the latest measurement wins)."""
    merged = {key: baseline._asdict()
              for key, baseline in {**read_baselines(database), **baselines}.items()}
    replace_json(database / BASELINES, merged)


def replace_json(path: Path, data: Any) -> None:
    """A database file written whole beside `path`, then renamed: a reader sees the old
    file or the new one, never half of one. The staged name is this process's own, so two
    tunes writing one shared database do not rename each other's half-written file."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    staged.replace(path)
