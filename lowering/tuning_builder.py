"""MetaSchedule's builder with one worker pool for a whole tuning run.

TVM's LocalBuilder starts a fresh process pool for every batch of candidates, and its build
function imports `tvm.s_tir.tensor_intrin`, which parses every target's tensor intrinsics
(25 s on a 2-core host) before compiling a kernel in 0.02 s: a 64-trial run spent 11 minutes
in that import. This builder keeps its workers for the run (recycling each after a number of
builds, since LocalBuilder's pool restart guards against a leak in long-lived workers) and
builds without that import: candidates of the CPU search are not tensorized, and a tensorized
one carries its intrinsic's body already. Builds still run in separate processes, so a
candidate that crashes LLVM or hangs costs its own result (and the timeout), not the run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder
from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

# A worker builds this many candidates, then a fresh one takes its place.
BUILDS_PER_WORKER = 256


def build_and_export(module: Any, target: Any) -> str:
    """Compile one candidate and write it as the tar the runner loads (runs in a worker)."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    from tvm.support.tar import tar

    module = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(module)
    built = tvm_build(module, target=target)
    path = Path(tempfile.mkdtemp(prefix="xpuport-tune-")) / f"candidate.{tar.output_format}"
    built.export_library(str(path), fcompile=tar)
    return str(path)


@derived_object
class PooledBuilder(PyBuilder):  # type: ignore[misc]
    """Builds candidates in a pool of `workers` processes that lives until `shutdown`."""

    def __init__(self, workers: int, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self.pool = PopenPoolExecutor(max_workers=workers, timeout=timeout_s,
                                      maximum_process_uses=BUILDS_PER_WORKER)

    def build(self, build_inputs: list[BuilderInput]) -> list[BuilderResult]:
        jobs = [(item.mod, item.target) for item in build_inputs]
        results = []
        for outcome in self.pool.map_with_error_catching(lambda job: build_and_export(*job), jobs):
            if outcome.status == StatusKind.COMPLETE:
                results.append(BuilderResult(outcome.value, None))
            elif outcome.status == StatusKind.TIMEOUT:
                results.append(BuilderResult(None, f"build timed out after {self.timeout_s} s"))
            else:
                results.append(BuilderResult(None, f"build failed: {outcome.value}"))
        return results

    def shutdown(self) -> None:
        self.pool.shutdown()
