"""`xpuport conform` and `xpuport report`: conformance runs, their reports and diffs."""

from __future__ import annotations

import collections
import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from xpuport.api import resolve_profile
from xpuport.backends.base import Backend
from xpuport.backends.registry import get_backend
from xpuport.cli import JsonFlag, app, emit_json, err, out, reports_errors
from xpuport.conformance.baseline import baseline_toml
from xpuport.conformance.conform import (
    SUITES,
    ConformRequest,
    check_device,
    check_tuning_db,
    conform,
    suite_cases,
)
from xpuport.conformance.report import (
    diff,
    format_diff,
    load_run,
    lowering_counts,
    pass_rate,
    summarize,
    write_documents,
)
from xpuport.conformance.results import (
    FAILURES,
    STATUSES,
    CaseResult,
    ResultsError,
    read_run,
)
from xpuport.conformance.runner import RunOptions
from xpuport.hw_profiles import HardwareProfile


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (text or "").split(",") if item.strip())


@app.command(name="conform")
@reports_errors
def conform_command(
    backend: Annotated[str, typer.Option(help="Backend to check (see `xpuport backends`).")],
    profile: Annotated[str | None, typer.Option(help="Hardware profile.")] = None,
    suite: Annotated[str, typer.Option(help=f"One of {', '.join(SUITES)}.")] = "ops",
    ops: Annotated[str | None, typer.Option(help="Comma-separated ops (or test names).")] = None,
    dtypes: Annotated[str | None, typer.Option(help="Comma-separated dtypes.")] = None,
    jobs: Annotated[int, typer.Option("-j", "--jobs", min=1, help="Worker processes.")] = 1,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds one case may run.")] = 120.0,
    output: Annotated[Path | None, typer.Option("--out", help="Results folder.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out.")] = False,
    fallback: Annotated[bool, typer.Option(
        help="Compile each case as `xpuport compile` does: declined nodes on the host.")] = False,
    library: Annotated[bool, typer.Option(
        help="The backend's library dispatch (MatMul/Conv to BLAS, oneDNN, cuBLAS).")] = True,
    tuning_db: Annotated[Path | None, typer.Option(
        help="Apply this tuning database's records to every build (made by `xpuport tune`).")
    ] = None,
    expectations: Annotated[
        list[Path] | None, typer.Option(help="Extra expectations TOML (repeatable).")
    ] = None,
    list_cases: Annotated[bool, typer.Option("--list", help="List the cases; run none.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Check a backend against the float64 reference; exit 1 on unexpected failures."""
    if list_cases:
        return _list(suite, _split(ops), _split(dtypes), as_json)
    if resume and output is None:
        raise ResultsError("--resume needs --out", "name the folder of the run to continue")
    impl = get_backend(backend)
    resolved = resolve_profile(impl, profile)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = output or Path("out") / "conform" / f"{backend}-{suite}-{stamp}"
    request = ConformRequest(backend, folder, resolved.name, suite, _split(ops), _split(dtypes),
                             resume, RunOptions(jobs=jobs, timeout=timeout, fallback=fallback,
                                                library=library,
                                                tuning_db=str(tuning_db) if tuning_db else None),
                             tuple(expectations or ()))
    check_device(impl)  # before the progress bar: a refusal draws no empty one
    check_tuning_db(impl, resolved, request.options.tuning_db)
    results = _run_with_progress(request, impl, resolved, show=not as_json)
    summary = summarize(read_run(folder), results)
    paths = write_documents(folder, summary, results)
    if as_json:
        emit_json({**summary, "reports": {k: str(v) for k, v in paths.items()}})
    else:
        _print_summary(results, folder, paths)
    if any(result.status in FAILURES for result in results):
        raise typer.Exit(1)


def _run_with_progress(request: ConformRequest, impl: Backend, profile: HardwareProfile,
                       show: bool) -> list[CaseResult]:
    counts: collections.Counter[str] = collections.Counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[counts]}"))
    with Progress(*columns, console=err, disable=not show, transient=False) as progress:
        task = progress.add_task(f"{request.backend} {request.suite}", total=None, counts="")

        def started(total: int) -> None:
            progress.update(task, total=total)

        def finished(result: CaseResult) -> None:
            counts[result.status] += 1
            text = " ".join(f"{s} {counts[s]}" for s in STATUSES if counts[s])
            progress.update(task, advance=1, counts=text)

        return conform(request, impl, profile, started, finished)


def _print_summary(results: list[CaseResult], folder: Path, paths: dict[str, Path]) -> None:
    counts = collections.Counter(result.status for result in results)
    table = Table("status", "cases", title=f"{len(results)} cases in {folder}")
    for status in STATUSES:
        if counts[status]:
            table.add_row(status, str(counts[status]))
    out.print(table)
    rate = pass_rate(counts)
    passed = counts["pass"] + counts["xpass"]
    if rate is not None:
        out.print(f"pass rate {rate:.1%}: {passed} of {len(results) - counts['unsupported']} "
                  f"cases the backend takes ({passed / len(results):.1%} of all {len(results)})")
    lowering = lowering_counts(results)
    if lowering["decomposed"] or lowering["host"]:
        out.print(f"of the passes, {lowering['decomposed']} needed decomposition and "
                  f"{lowering['host']} ran some nodes on the host")
    failed = [r for r in results if r.status in FAILURES]
    if failed:
        shown = Table("case", "status", "max ulp", "message", title="unexpected failures")
        for result in failed[:25]:
            shown.add_row(result.case, result.status, str(result.max_ulp or ""),
                          result.message[:100])
        out.print(shown)
        if len(failed) > 25:
            out.print(f"... and {len(failed) - 25} more in {paths.get('md', folder)}")
    out.print("reports: " + ", ".join(str(path) for path in paths.values()))


def _list(suite: str, ops: tuple[str, ...], dtypes: tuple[str, ...], as_json: bool) -> None:
    by_op: dict[str, set[str]] = collections.defaultdict(set)
    for case in suite_cases(suite, ops, dtypes):
        by_op[case.op].add(case.dtype)
    if as_json:
        return emit_json({op: sorted(d) for op, d in by_op.items()})
    table = Table("op", "dtypes", title=f"{len(by_op)} ops in suite {suite}")
    for op, found in by_op.items():
        table.add_row(op, ", ".join(sorted(found)))
    out.print(table)


@app.command(name="report")
@reports_errors
def report_command(
    paths: Annotated[list[Path], typer.Argument(help="DIR, or: diff OLD NEW.")],
    html: Annotated[Path | None, typer.Option(help="Also write the HTML report here.")] = None,
    md: Annotated[Path | None, typer.Option(help="Also write the Markdown report here.")] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="Write the run's failures as an expectations TOML.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Rewrite a run's reports, or `report diff OLD NEW` (exit 1 on regressions)."""
    if str(paths[0]) == "diff":
        if len(paths) != 3:
            raise ResultsError("`xpuport report diff` takes two run folders",
                               "xpuport report diff OLD_DIR NEW_DIR")
        return _diff(paths[1], paths[2], as_json)
    if len(paths) != 1:
        raise ResultsError("`xpuport report` takes one run folder", "xpuport report DIR")
    folder = paths[0]
    run, results = load_run(folder)
    summary = summarize(run, results)
    written = write_documents(folder, summary, results)
    for wanted, key in ((html, "html"), (md, "md")):
        if wanted is not None:
            wanted.write_bytes(written[key].read_bytes())
            written[f"{key} copy"] = wanted
    if baseline is not None:
        baseline.write_text(baseline_toml(results, str(run["backend"])))
        written["baseline"] = baseline
    if as_json:
        return emit_json(summary)
    _print_summary(results, folder, written)


def _diff(old: Path, new: Path, as_json: bool) -> None:
    changes = diff(old, new)
    if as_json:
        emit_json({"regressions": [vars(c) for c in changes.regressions],
                   "fixes": [vars(c) for c in changes.fixes]})
    else:
        out.print(format_diff(changes), markup=False)
    if changes.regressions:
        raise typer.Exit(1)
