"""One MetaSchedule search over every kernel, stopped by a wall-clock budget, with progress.

A budget must not be met by running MetaSchedule in short rounds: each round starts its
task scheduler again, whose first pass gives the kernels one batch each in order, so rounds
smaller than (kernels x batch) tuned only the first few kernels of a model, every round, and
each round's cost model started untrained. Instead one search runs to its trial count, and
each kernel's search strategy proposes nothing once the budget is spent: MetaSchedule then
retires the kernel as it does one with no candidates left, and the batches already sent are
measured and kept.

Searching also no longer parses every target's tensor intrinsics first (see
`target_intrinsics_only`): 51 s on a 2-core host before a CPU search measured anything.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from typing import Any

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
from tvm.s_tir.meta_schedule.search_strategy import PySearchStrategy


@derived_object
class BudgetedSearch(PySearchStrategy):  # type: ignore[misc]
    """`inner`'s search until `deadline` (time.monotonic()), then no more candidates."""

    def __init__(self, inner: Any, deadline: float | None) -> None:
        self.inner, self.deadline = inner, deadline

    def _initialize_with_tune_context(self, context: Any) -> None:
        self.inner._initialize_with_tune_context(context)

    def pre_tuning(self, max_trials: int, num_trials_per_iter: int, design_spaces: Any,
                   database: Any = None, cost_model: Any = None) -> None:
        self.inner.pre_tuning(max_trials, num_trials_per_iter, design_spaces, database,
                              cost_model)

    def post_tuning(self) -> None:
        self.inner.post_tuning()

    def generate_measure_candidates(self) -> Any:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return None
        return self.inner.generate_measure_candidates()

    def notify_runner_results(self, measure_candidates: Any, results: Any) -> None:
        self.inner.notify_runner_results(measure_candidates, results)

    def clone(self) -> Any:
        return BudgetedSearch(self.inner.clone(), self.deadline)


@derived_object
class ReportProgress(PyMeasureCallback):  # type: ignore[misc]
    """Calls `report(candidates measured so far, kernel)` after each measured batch."""

    def __init__(self, report: Callable[[int, str], None]) -> None:
        self.report, self.measured = report, 0

    def apply(self, task_scheduler: Any, task_id: int, measure_candidates: Any,
              builder_results: Any, runner_results: Any) -> None:
        self.measured += len(runner_results)
        self.report(self.measured, str(task_scheduler.tasks_[task_id].ctx.task_name))


INTRINSICS = "tvm.s_tir.tensor_intrin"
# The intrinsics module of a CPU target, by the start of its triple.
_CPU_INTRINSICS = {"x86_64": "x86", "i686": "x86", "aarch64": "arm_cpu", "arm": "arm_cpu",
                   "riscv": "riscv_cpu"}


@contextmanager
def target_intrinsics_only(target: Any) -> Iterator[None]:
    """Register only `target`'s tensor intrinsics while MetaSchedule sets up its search.

    TuneContext imports `tvm.s_tir.tensor_intrin`, whose package imports the intrinsics of
    every target, CUDA's included: 51 s of TVMScript parsing here, against 0.5 s for x86's.
    For an llvm target whose family is known, the package is entered in sys.modules unrun,
    with only that family's module imported; it is taken out again afterwards, so a later
    import in the process runs it in full (the family's module is then reused, not rerun).
    """
    triple = str(target.attrs.get("mtriple", "")) if target.kind.name == "llvm" else ""
    family = next((module for prefix, module in _CPU_INTRINSICS.items()
                   if triple.startswith(prefix)), None)
    if family is None or INTRINSICS in sys.modules:
        yield
        return
    spec = importlib.util.find_spec(INTRINSICS)
    assert spec is not None, "TVM without its tensor intrinsics"
    sys.modules[INTRINSICS] = importlib.util.module_from_spec(spec)
    try:
        importlib.import_module(f"{INTRINSICS}.{family}")
        yield
    finally:
        sys.modules.pop(INTRINSICS, None)


META_SCHEDULE_LOGGER = "tvm.s_tir.meta_schedule"


@contextmanager
def unnamed_log_handlers_set_aside() -> Iterator[None]:
    """MetaSchedule configures its logger by name for each search and lists the handlers
    already on it by name: an unnamed one (pytest's capture handlers, one a user added)
    makes its setup fail inside TVM ('NoneType' object has no attribute 'format'). They are
    taken off for the search and put back after it."""
    logger = logging.getLogger(META_SCHEDULE_LOGGER)
    aside = [handler for handler in logger.handlers if handler.get_name() is None]
    for handler in aside:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in aside:
            logger.addHandler(handler)


@contextmanager
def search_log_off_stdout() -> Iterator[None]:
    """MetaSchedule writes its log to sys.stdout as well as to the database's logs/ folder:
    a table per batch and its cost model's iterations (95 lines for one kernel tuned with 4
    trials), which also made `tune --json` print no valid JSON. During the search its
    console gets only warnings and errors, on stderr; logs/ keeps the whole log."""
    logger = logging.getLogger(META_SCHEDULE_LOGGER)
    level = logger.level
    logger.setLevel(logging.WARNING)  # MetaSchedule gives its console this logger's level
    try:
        with redirect_stdout(sys.stderr):  # where its console handler's stream resolves
            yield
    finally:
        logger.setLevel(level)
