"""Each tuned kernel's time under compile's default schedules, so a record applies only where
it is faster.

MetaSchedule ranks its candidates against each other, never against what compile does
without a record (backends/cpu_schedules.py): a record slower than the default schedules
would make its kernel slower. `tune` measures each kernel's default schedule with the same
builder and runner as the candidates and keeps the times beside the records, by workload
hash (`xpuport-baselines.json`); compile then skips records that do not beat them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import tvm

BASELINES = "xpuport-baselines.json"


def read_baselines(database: Path) -> dict[str, float]:
    """Workload hash -> seconds of its default schedule; empty for databases without them."""
    file = database / BASELINES
    return json.loads(file.read_text()) if file.is_file() else {}


def measure_baselines(contexts: list[Any], schedules: Any, target: Any, builder: Any,
                      runner: Any) -> dict[str, float]:
    """Seconds of each task's kernel scheduled by `schedules`, by its workload hash; a kernel
    whose default schedule fails to build or run is left out (every record may apply)."""
    from tvm.s_tir import meta_schedule as ms

    hashes = [ms.database.Workload(context.mod).as_json()[0] for context in contexts]
    with target:
        kernels = [schedules(context.mod) for context in contexts]
    built = builder.build([ms.builder.BuilderInput(kernel, target) for kernel in kernels])
    ran = [(key, kernel, result) for key, kernel, result in zip(hashes, kernels, built,
                                                                 strict=True)
           if result.error_msg is None]
    device = str(tvm.runtime.device(target.get_target_device_type(), 0)).split(":")[0]
    futures = runner.run([ms.runner.RunnerInput(result.artifact_path, device,
                                                ms.arg_info.ArgInfo.from_entry_func(kernel))
                          for _, kernel, result in ran])
    seconds = {}
    for (key, _, result), future in zip(ran, futures, strict=True):
        measured = future.result()
        if measured.error_msg is None and measured.run_secs:
            seconds[key] = float(sum(float(s) for s in measured.run_secs) / len(measured.run_secs))
        shutil.rmtree(Path(result.artifact_path).parent, ignore_errors=True)
    return seconds


def save_baselines(database: Path, seconds: dict[str, float]) -> None:
    """Merge `seconds` into the database's baselines (the latest measurement wins)."""
    merged = {**read_baselines(database), **seconds}
    staged = database / f".{BASELINES}.tmp"
    staged.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    staged.replace(database / BASELINES)
