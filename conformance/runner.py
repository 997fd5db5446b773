"""Runs cases in worker processes: a crashing or hanging kernel costs one case, not the run.

A worker takes a batch, prepares it (one TVM build for the whole batch), then runs its cases
one by one, announcing each before it starts. The parent watches deadlines and deaths: a
worker that dies or overruns while running a case marks that case crash or timeout, and the
rest of its batch goes back to the queue; one that dies or overruns while preparing has its
batch halved until the culprit stands alone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from xpuport.conformance.cases import Case
from xpuport.conformance.evaluate import Outcome

OnOutcome = Callable[[Case, Outcome], None]


@dataclass(frozen=True)
class RunOptions:
    jobs: int = 1
    timeout: float = 120.0  # seconds one case may run; preparing a batch gets twice that
    batch_size: int = 32
    fallback: bool = False  # compile each case as `xpuport compile` would, host regions too
    library: bool = True  # the backend's library dispatch, as compile does by default
    tuning_db: str | None = None  # a tuning database whose records compile applies


def worker_main(conn: Connection, backend_name: str, profile_name: str,
                log_path: str | None = None, fallback: bool = False,
                library: bool = True, tuning_db: str | None = None) -> None:
    """A worker's loop: receive a batch, prepare it, run its cases, until told to stop."""
    if log_path is not None:  # TVM's and the kernels' own chatter goes to the run's log
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
    from xpuport.api import resolve_profile  # heavy imports happen in the worker
    from xpuport.backends.registry import get_backend
    from xpuport.conformance.engines import engine_for
    from xpuport.conformance.evaluate import evaluate

    backend = get_backend(backend_name)
    engine = engine_for(backend, resolve_profile(backend, profile_name), fallback, library,
                        tuning_db)
    while True:
        try:
            batch: list[Case] | None = conn.recv()
        except EOFError:  # the parent is gone
            return
        if batch is None:
            return
        conn.send(("prepare", None))
        prepared = engine.prepare(batch)
        for case in batch:
            early = _not_run(case.case_id, prepared.errors, prepared.unsupported)
            if early is not None:
                conn.send(("outcome", early))
                continue
            conn.send(("start", case.case_id))
            outcome = replace(evaluate(case, prepared.runners[case.case_id]),
                              placement=prepared.placements.get(case.case_id))
            if outcome.status == "fail" and case.suite == "models":
                from xpuport.conformance.localize import localize

                where = localize(case, engine)
                outcome = replace(outcome, message=f"{outcome.message} {where}".strip())
            conn.send(("outcome", outcome))
        conn.send(("done", None))


def _not_run(case_id: str, errors: dict[str, str], unsupported: dict[str, str]
             ) -> Outcome | None:
    if case_id in unsupported:
        return Outcome(case_id, "unsupported", message=unsupported[case_id])
    if case_id in errors:
        return Outcome(case_id, "error", message=errors[case_id])
    return None


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    pending: dict[str, Case] = field(default_factory=dict)  # sent, not yet reported
    phase: str = "idle"  # idle, prepare, run
    current: str | None = None
    since: float = 0.0

    @property
    def busy(self) -> bool:
        return self.phase != "idle"


class Runner:
    """The parent side: dispatches batches, streams outcomes, turns deaths into results."""

    def __init__(self, backend: str, profile: str, options: RunOptions,
                 on_outcome: OnOutcome, log_path: Path | None = None) -> None:
        self.backend, self.profile, self.options = backend, profile, options
        self.log_path = str(log_path) if log_path is not None else None
        self.on_outcome = on_outcome
        self.context = multiprocessing.get_context("spawn")  # TVM's threads forbid fork
        self.queue: deque[list[Case]] = deque()
        self.workers: list[_Worker] = []

    def run(self, cases: Sequence[Case]) -> None:
        size = self.options.batch_size
        self.queue.extend(list(cases[i:i + size]) for i in range(0, len(cases), size))
        self.workers = [self._spawn() for _ in range(max(1, min(self.options.jobs,
                                                                len(self.queue))))]
        try:
            while self.queue or any(w.busy for w in self.workers):
                self._dispatch()
                self._collect()
                self._check_deadlines()
        finally:
            self._stop_all()

    def _spawn(self) -> _Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=worker_main, daemon=True,
                                       args=(child, self.backend, self.profile,
                                             self.log_path, self.options.fallback,
                                             self.options.library, self.options.tuning_db))
        process.start()
        child.close()
        return _Worker(process, parent)

    def _dispatch(self) -> None:
        for worker in self.workers:
            if not worker.busy and self.queue:
                batch = self.queue.popleft()
                worker.pending = {case.case_id: case for case in batch}
                worker.phase, worker.current, worker.since = "prepare", None, time.monotonic()
                worker.conn.send(batch)

    def _collect(self) -> None:
        busy = {w.conn: w for w in self.workers if w.busy}
        for conn in wait(list(busy), timeout=0.2):
            worker = busy[conn]  # type: ignore[index]  # wait() returns what it was given
            try:
                while worker.busy and worker.conn.poll():
                    self._handle(worker, *worker.conn.recv())
            except (EOFError, ConnectionResetError):
                worker.process.join(timeout=5)
                self._lost(worker, "crash", _death(worker.process))

    def _handle(self, worker: _Worker, kind: str, payload: Any) -> None:
        if kind == "start":
            worker.phase, worker.current, worker.since = "run", payload, time.monotonic()
        elif kind == "outcome":
            case = worker.pending.pop(payload.case)
            self.on_outcome(case, payload)
        elif kind == "done":
            worker.phase, worker.current = "idle", None

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            limit = self.options.timeout * (2 if worker.phase == "prepare" else 1)
            if worker.busy and now - worker.since > limit:
                worker.process.kill()
                worker.process.join(timeout=5)
                self._lost(worker, "timeout", f"no result after {limit:g} s")

    def _lost(self, worker: _Worker, status: str, message: str) -> None:
        """Attribute a dead or killed worker's loss, requeue the rest, replace the worker."""
        pending = list(worker.pending.values())
        if worker.phase == "run" and worker.current in worker.pending:
            culprit = worker.pending.pop(worker.current)
            self.on_outcome(culprit, Outcome(culprit.case_id, status, message=message))
            pending = list(worker.pending.values())
            if pending:
                self.queue.appendleft(pending)
        elif len(pending) == 1:
            self.on_outcome(pending[0], Outcome(pending[0].case_id, status,
                                                message=f"{message} while preparing it"))
        elif pending:
            half = len(pending) // 2
            self.queue.extendleft([pending[half:], pending[:half]])
        worker.conn.close()
        self.workers[self.workers.index(worker)] = self._spawn()

    def _stop_all(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError):  # a dead worker's pipe is closed
                worker.conn.send(None)
        deadline = time.monotonic() + 5
        for worker in self.workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()


def _death(process: BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"worker killed by {signal.Signals(-code).name}"
    return f"worker exited with code {code}"
