"""The `xpuport` command: a thin face over the API, with tables for people and --json for CI."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table

from xpuport import api
from xpuport.backends.base import CompileOptions
from xpuport.backends.registry import discover, get_backend
from xpuport.benchmarks.harness import ratio
from xpuport.benchmarks.peers import check_peers
from xpuport.benchmarks.suite_run import SuiteRequest, time_against_peers
from xpuport.cli_render import print_placement
from xpuport.compare import DEFAULT_ATOL, DEFAULT_RTOL, compare, run_peer
from xpuport.errors import ExportError, InputError, ToleranceExceededError, XpuportError
from xpuport.hw_profiles import list_profiles
from xpuport.inputs import parse_input_files, random_inputs
from xpuport.ir.canonicalize import canonicalize, default_opset
from xpuport.ir.export import export_module, load_factory
from xpuport.ir.inspect import TensorSpec, summarize
from xpuport.ir.load import load_model
from xpuport.lowering.partition import place

app = typer.Typer(
    help="xpuport: lower ONNX models per accelerator through TVM, with proof.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Turn xpuport's typed errors into a message, its fix, and the error's exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except XpuportError as exc:
            err.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
            err.print(f"[bold]fix:[/] {exc.fix}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from exc

    return wrapper  # type: ignore[return-value]  # wraps keeps the signature typer reads


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
@reports_errors
def backends(as_json: JsonFlag = False) -> None:
    """List registered backends (built-in and plugins), with load errors."""
    rows = [entry.to_json() for entry in discover()]
    if as_json:
        return emit_json(rows)
    table = Table(Column("name", no_wrap=True), "origin", "available", "source", "error")
    for row in rows:
        table.add_row(*(str(row[key] or "") for key in table_keys(table)))
    out.print(table)


@app.command()
@reports_errors
def profiles(as_json: JsonFlag = False) -> None:
    """List hardware profiles: the accelerators described as data."""
    rows = [profile.to_json() for profile in list_profiles()]
    if as_json:
        return emit_json(rows)
    table = Table(
        Column("name", no_wrap=True), "vendor", "device", "backend", "status", "arch", "figures"
    )
    for row in rows:
        figures = ", ".join(row["figures"]) or "-"
        table.add_row(*(str(row[k]) for k in table_keys(table)[:-1]), figures)
    out.print(table)


def table_keys(table: Table) -> list[str]:
    return [str(column.header) for column in table.columns]


@app.command()
@reports_errors
def export(
    factory: Annotated[str, typer.Argument(help="MODULE:FACTORY returning a torch.nn.Module.")],
    inputs: Annotated[
        list[str], typer.Option("--input", help="NAME=D0xD1x...[:DTYPE], one per input.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .onnx file to write.")],
    dynamic_batch: Annotated[
        bool, typer.Option(help="Make dim 0 of every input symbolic.")
    ] = False,
) -> None:
    """Export a PyTorch module to ONNX (torch's dynamo exporter)."""
    specs = [parse_input_spec(text) for text in inputs]
    module = load_factory(factory)
    path = export_module(module, specs, output, dynamic_batch=dynamic_batch)
    out.print(f"wrote {path}")


def parse_input_spec(text: str) -> TensorSpec:
    name, sep, rest = text.partition("=")
    dims_text, _, dtype = rest.partition(":")
    try:
        dims = tuple(int(d) for d in dims_text.lower().split("x"))
        valid = bool(sep and name) and all(d > 0 for d in dims)
        np.dtype(dtype or "float32")
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise ExportError(
            f"--input '{text}' is not NAME=D0xD1x...[:DTYPE]",
            "write e.g. --input x=1x3x224x224 or --input ids=1x128:int64",
        )
    return TensorSpec(name, dims, str(np.dtype(dtype or "float32")))


@app.command()
@reports_errors
def inspect(
    model: Annotated[Path, typer.Argument(help="The .onnx file.")],
    backend: Annotated[
        str | None, typer.Option(help="Also show where each node would run on this backend.")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Hardware profile (with --backend).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a model's canonical form: signature, op inventory, parameters, hash, placement."""
    loaded = load_model(model)
    canonical = canonicalize(loaded)
    summary = summarize(canonical)
    placement = None
    if backend is not None:
        impl = get_backend(backend)
        _, placement = place(canonical, impl, api.resolve_profile(impl, profile))
    source_opset = default_opset(loaded)
    data = {
        "model": str(model),
        "source_opset": source_opset,
        "opset": summary.opset,
        "inputs": [spec.to_json() for spec in summary.inputs],
        "outputs": [spec.to_json() for spec in summary.outputs],
        "nodes": summary.node_count,
        "ops": dict(summary.op_counts),
        "parameters": summary.parameter_count,
        "parameter_bytes": summary.parameter_bytes,
        "graph_hash": summary.graph_hash,
    }
    if placement is not None:
        data["placement"] = placement.to_json()
    if as_json:
        return emit_json(data)
    out.print(
        f"[bold]{model}[/]  opset {source_opset} → {summary.opset}, "
        f"{summary.node_count} nodes, {summary.parameter_count:,} parameters "
        f"({summary.parameter_bytes / 1e6:.2f} MB), graph {summary.graph_hash[:16]}"
    )
    print_signature(summary.inputs, summary.outputs)
    ops = Table("op", "count", title="op inventory")
    for op, count in summary.op_counts:
        ops.add_row(op, str(count))
    out.print(ops)
    if placement is not None:
        print_placement(out, placement)


_VIA = {"onnx-function": "ONNX function body", "xpuport-rule": "xpuport decomposition rule"}


def print_signature(inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> None:
    table = Table("", "name", "shape", "dtype")
    for kind, specs in (("input", inputs), ("output", outputs)):
        for spec in specs:
            table.add_row(kind, spec.name, str(list(spec.shape)), spec.dtype)
    out.print(table)


class StepDisplay:
    """Shows the current compile step and remembers every step taken."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("compile", total=None)
        self.steps: list[str] = []

    def __call__(self, step: str) -> None:
        self.steps.append(step)
        self.progress.update(self.task, description=f"compile: {step}")


@contextmanager
def compile_progress(enabled: bool) -> Iterator[StepDisplay]:
    """A spinner naming the current compile step, on stderr so --json stays clean."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not enabled) as progress:
        yield StepDisplay(progress)


@contextmanager
def tune_progress(enabled: bool, trials: int) -> Iterator[Callable[[int, str], None]]:
    """Trials measured, on stderr so --json stays clean: a bar on a terminal, else a line
    per new count (MetaSchedule reports after every batch, also one that measured none). A
    kernel with a single candidate retires early, so the count may end short of `trials`."""
    if not err.is_terminal:
        reported = [0]

        def line(measured: int, kernel: str) -> None:
            if enabled and measured > reported[0]:
                reported[0] = measured
                err.print(f"{measured} trials measured (last: {kernel})")

        yield line
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not enabled) as bar:
        task = bar.add_task("tune", total=trials)
        yield lambda measured, kernel: bar.update(task, completed=measured,
                                                  description=f"tune: last {kernel}")


TuningFlag = Annotated[bool, typer.Option(help="Apply the profile's tuning records.")]
TuningDbOption = Annotated[
    Path | None, typer.Option(help="A tuning database folder (default: the profile's).")]


def _tuning_choice(tuning: bool, tuning_db: Path | None) -> Path | bool:
    """What compile's `tuning` gets: a database, the profile's (True) or none (False)."""
    if tuning_db is not None and not tuning:
        raise XpuportError("--tuning-db and --no-tuning contradict each other",
                           "give one of them")
    return (tuning_db or True) if tuning else False


@app.command(name="compile")
@reports_errors
def compile_command(
    model: Annotated[Path, typer.Argument(help="The .onnx file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Artifact directory to write.")],
    backend: Annotated[str, typer.Option(help="Backend name (see `xpuport backends`).")] = "cpu",
    profile: Annotated[str | None, typer.Option(help="Hardware profile name or .toml.")] = None,
    opt_level: Annotated[int, typer.Option(help="TVM optimization level 0..3.")] = 3,
    cache: Annotated[bool, typer.Option(help="Use the compile cache.")] = True,
    library: Annotated[
        bool, typer.Option(help="Route MatMul/Gemm/Conv to the backend's libraries.")
    ] = True,
    strict: Annotated[bool, typer.Option(help="Refuse any fallback to the host.")] = False,
    max_fallback: Annotated[
        int | None, typer.Option(min=0, help="Refuse more host-fallback nodes than this.")
    ] = None,
    tuning: TuningFlag = True,
    tuning_db: TuningDbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Compile an ONNX model for a backend into an artifact directory."""
    records = _tuning_choice(tuning, tuning_db)
    options = CompileOptions(opt_level=opt_level, library=library)
    with compile_progress(enabled=not as_json) as display:
        artifact = api.compile(
            model,
            backend,
            profile,
            output,
            options=options,
            use_cache=cache,
            on_step=display,
            strict=strict,
            max_fallback=max_fallback,
            tuning=records,
        )
    manifest = artifact.manifest
    data = {
        "artifact": str(artifact.path),
        "cache_hit": "cache hit" in display.steps,
        **{
            k: manifest[k]
            for k in (
                "backend",
                "profile",
                "target",
                "graph_hash",
                "compile_seconds",
                "inputs",
                "outputs",
            )
        },
        "fallback": manifest.get("fallback", []),
        "decomposed": manifest.get("decomposed", []),
        "regions": len(manifest.get("regions", [])) or 1,
        "library_calls": manifest.get("library_calls", {}),
        "tuning": manifest.get("tuning"),
    }
    if as_json:
        return emit_json(data)
    origin = "from cache" if data["cache_hit"] else f"in {manifest['compile_seconds']:.1f} s"
    out.print(
        f"compiled {model} for {manifest['backend']} ({manifest['profile']}) {origin}"
        f" → {artifact.path}"
    )
    if data["tuning"]:
        out.print(f"tuning records from {data['tuning']['database']} for "
                  f"{len(data['tuning']['tuned_kernels'])} kernel(s)")
        if stale := data["tuning"].get("stale_kernels"):
            out.print(f"[bold yellow]{len(stale)} kernel(s) not tuned[/]: their default "
                      f"schedules changed since `xpuport tune` timed them against the records "
                      f"({', '.join(stale)}); tune this model again to re-measure them",
                      soft_wrap=True)
    for function, sites in data["library_calls"].items():
        out.print(f"library: {sites} call(s) of {function}")
    for item in data["decomposed"]:
        out.print(f"decomposed {item['node']} ({item['op']}) into {item['nodes']} node(s) "
                  f"through its {_VIA[item['via']]}", soft_wrap=True)
    if data["fallback"]:
        out.print(f"[bold yellow]{len(data['fallback'])} node(s) run on the host[/] "
                  f"({data['regions']} regions; placement.json says why):")
        for node in data["fallback"]:
            out.print(f"  {node['node']} ({node['op']}): {node['reason']}", soft_wrap=True)
    print_signature(artifact.inputs, artifact.outputs)


@app.command()
@reports_errors
def run(
    artifact_dir: Annotated[Path, typer.Argument(help="Directory written by `xpuport compile`.")],
    inputs: Annotated[
        list[str] | None, typer.Option("--input", help="NAME=FILE.npy, one per input.")
    ] = None,
    random: Annotated[bool, typer.Option("--random", help="Use random inputs.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for --random.")] = 0,
    dims: Annotated[
        list[str] | None, typer.Option("--dim", help="NAME=SIZE for a symbolic dim.")
    ] = None,
    compare_with: Annotated[
        str | None, typer.Option("--compare", help="Peer to compare with: onnxruntime.")
    ] = None,
    atol: Annotated[float, typer.Option(help="Absolute tolerance for --compare.")] = DEFAULT_ATOL,
    rtol: Annotated[float, typer.Option(help="Relative tolerance for --compare.")] = DEFAULT_RTOL,
    save: Annotated[Path | None, typer.Option(help="Folder to save outputs as .npy.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run an artifact; with --compare, measure its error against a peer on the same inputs."""
    artifact = api.load(artifact_dir)
    feeds = choose_inputs(artifact.inputs, inputs or [], random, seed, dims or [])
    outputs = artifact.run(feeds)
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        for name, array in outputs.items():
            np.save(save / f"{safe_file_name(name)}.npy", array)
    errors = []
    if compare_with:
        expected = run_peer(compare_with, artifact.graph_path, feeds)
        errors = compare(outputs, expected, atol, rtol)
    report_run(outputs, errors, compare_with, atol, rtol, as_json)
    if any(not e.within for e in errors):
        raise ToleranceExceededError(
            f"outputs differ from {compare_with} beyond atol={atol}, rtol={rtol}",
            "inspect the outputs with --save; if the difference is expected, state the "
            "tolerance with --atol/--rtol",
        )


def choose_inputs(
    specs: tuple[TensorSpec, ...], files: list[str], random: bool, seed: int, dims: list[str]
) -> dict[str, np.ndarray]:
    if bool(files) == random:
        raise InputError(
            "give either --input NAME=FILE.npy for every input, or --random",
            f"the model takes: {', '.join(s.name for s in specs)}",
        )
    if files:
        return parse_input_files(files)
    sizes = {}
    for text in dims:
        name, _, size = text.partition("=")
        if not size.isdigit():
            raise InputError(f"--dim '{text}' is not NAME=SIZE", "write e.g. --dim batch=4")
        sizes[name] = int(size)
    return random_inputs(specs, seed, sizes)


def safe_file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def report_run(
    outputs: dict[str, np.ndarray],
    errors: list[Any],
    peer: str | None,
    atol: float,
    rtol: float,
    as_json: bool,
) -> None:
    by_name = {e.name: e for e in errors}
    rows = []
    for name, array in outputs.items():
        row: dict[str, Any] = {"name": name, "shape": list(array.shape), "dtype": array.dtype.name}
        if name in by_name:
            e = by_name[name]
            row |= {"max_abs_error": e.max_abs, "max_rel_error": e.max_rel, "within": e.within}
        rows.append(row)
    if as_json:
        return emit_json({"outputs": rows, "compare": peer, "atol": atol, "rtol": rtol})
    columns = ["name", "shape", "dtype"] + (["max abs err", "max rel err", "ok"] if peer else [])
    table = Table(*columns, title=f"vs {peer} (atol {atol}, rtol {rtol})" if peer else None)
    for row in rows:
        cells = [row["name"], str(row["shape"]), row["dtype"]]
        if peer:
            cells += [
                f"{row['max_abs_error']:.3g}",
                f"{row['max_rel_error']:.3g}",
                "[green]yes[/]" if row["within"] else "[red]NO[/]",
            ]
        table.add_row(*cells)
    out.print(table)


@app.command()
@reports_errors
def tune(
    model: Annotated[Path, typer.Argument(help="The .onnx file.")],
    backend: Annotated[str, typer.Option(help="Backend name.")] = "cpu",
    profile: Annotated[str | None, typer.Option(help="Hardware profile.")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Measured candidates in all.")] = 256,
    budget: Annotated[
        float | None, typer.Option(min=1, help="Stop proposing candidates after this many seconds.")
    ] = None,
    db: Annotated[Path | None, typer.Option(help="Database folder (default: the profile's; "
                                            "share it with your team).")] = None,
    library: Annotated[bool, typer.Option(help="Library dispatch, as compile will do.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Tune TVM's kernels for a model with MetaSchedule; compile applies the records. With
    library dispatch on, the model with every op in TVM is tuned too, both are timed, and
    compile follows the faster."""
    with tune_progress(enabled=not as_json, trials=trials) as progress:
        result = api.tune(model, backend, profile, trials=trials, budget=budget, database=db,
                          options=CompileOptions(library=library), on_progress=progress)
    choice = result.library_choice
    data = {"database": str(result.database), "tasks": result.tasks, "trials": result.trials,
            "seconds": round(result.seconds, 1), "out_of_budget": result.out_of_budget,
            "library_choice": choice.to_json() if choice else None}
    if as_json:
        return emit_json(data)
    ended = " (the budget ran out)" if result.out_of_budget else ""
    out.print(f"tuned {data['tasks']} kernel(s) of {model} with {data['trials']} trials in "
              f"{data['seconds']} s{ended} → {data['database']}")
    if choice is not None:
        kept = "library dispatch" if choice.library else "TVM's tuned kernels, library dispatch off"
        out.print(f"with the records: {choice.library_ms:.3f} ms with library dispatch, "
                  f"{choice.tvm_ms:.3f} ms without; compile will use {kept}")


@app.command()
@reports_errors
def bench(
    model: Annotated[Path | None, typer.Argument(help="The .onnx file (or --suite).")] = None,
    backend: Annotated[str, typer.Option(help="Backend name.")] = "cpu",
    profile: Annotated[str | None, typer.Option(help="Hardware profile.")] = None,
    vs: Annotated[str, typer.Option("--vs", help="Comma-separated peers: onnxruntime, "
                                    "torch, torch.compile (torch ones with --suite).")] = "",
    suite: Annotated[bool, typer.Option(help="Bench the suite of benchmarks/suite.py.")] = False,
    models: Annotated[str, typer.Option(help="With --suite: only these models.")] = "",
    out_dir: Annotated[Path | None, typer.Option("--out", help="With --suite: write "
                                                 "bench.json and bench.md here.")] = None,
    library: Annotated[bool, typer.Option(help="Library dispatch (see compile).")] = True,
    batches: Annotated[str, typer.Option(help="With --suite: batch sizes, e.g. 1,32.")] = "",
    precision: Annotated[str, typer.Option(help="With --suite: float32 or float16.")] = "float32",
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs per engine.")] = 3,
    repeat: Annotated[int, typer.Option(
        min=1, help="Timed runs per engine, at least: more for a fast model, so that each "
        "of its 5 blocks lasts 0.2 s.")] = 20,
    tuning: TuningFlag = True,
    tuning_db: TuningDbOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Median latency of xpuport and peers in one run; ratio xpuport ÷ peer (<1: faster)."""
    records = _tuning_choice(tuning, tuning_db)
    peers = [p.strip() for p in (vs or ("onnxruntime,torch" if suite else "onnxruntime"))
             .split(",") if p.strip()]
    check_peers(peers, have_torch_model=suite)
    options = CompileOptions(library=library)
    suite_only = {"--models": models, "--batches": batches, "--out": out_dir,
                  "--precision": precision != "float32"}
    if not suite and any(suite_only.values()):
        given = ", ".join(name for name, value in suite_only.items() if value)
        raise XpuportError(f"{given} only apply to the suite", "add --suite, or drop them")
    if suite:
        if precision not in ("float32", "float16"):
            raise XpuportError(f"--precision {precision}", "use float32 or float16")
        try:
            sizes = tuple(int(b) for b in batches.split(",") if b.strip())
        except ValueError as exc:
            raise XpuportError(f"--batches {batches!r}: not integers",
                               "e.g. --batches 1,32") from exc
        request = SuiteRequest(backend, profile, _suite_models(models), peers, options, warmup,
                               repeat, sizes, precision, records)
        return _bench_suite(request, out_dir, as_json)
    if model is None:
        raise XpuportError("bench needs a model", "give an .onnx file, or --suite")
    with compile_progress(enabled=not as_json) as on_step:
        artifact = api.compile(model, backend, profile, on_step=on_step, options=options,
                               tuning=records)
    feeds = random_inputs(artifact.inputs)
    timings = time_against_peers(artifact, feeds, peers, model, None, warmup, repeat)
    rows = [{**t.to_json(), "ratio": ratio(timings[0], t)} for t in timings]
    tuned = artifact.tuned_kernels
    if as_json:
        return emit_json({"model": str(model), "backend": backend, "timings": rows,
                          "tuned_kernels": tuned})
    table = Table("engine", "median ms", "p10 ms", "p90 ms", "runs", "xpuport ÷ engine",
                  title=f"{model} on {backend} (warm-up {warmup}, {repeat} runs)")
    for row in rows:
        table.add_row(str(row["engine"]), f"{row['median_ms']:.3f}", f"{row['p10_ms']:.3f}",
                      f"{row['p90_ms']:.3f}", str(row["runs"]), f"{row['ratio']:.2f}")
    out.print(table)
    if tuned:
        out.print(f"with tuning records for {len(tuned)} kernel(s): {', '.join(tuned)}",
                  soft_wrap=True)


def _suite_models(names: str) -> list[Any]:
    from xpuport.benchmarks.suite import suite_models

    try:
        return suite_models(names)
    except KeyError as exc:
        raise XpuportError(f"--models: no suite model {exc}",
                           "see benchmarks/suite.py for the names") from exc


def _bench_suite(request: SuiteRequest, out_dir: Path | None, as_json: bool) -> None:
    from xpuport.benchmarks.suite_run import run_suite, write_tables

    def show(row: dict[str, object]) -> None:
        if not as_json:
            out.print(f"{row['model']} batch {row['batch']}: {row['median_ms']} "
                      f"ratio {row['ratio']}", soft_wrap=True)

    rows = run_suite(request, show)
    written = write_tables(rows, request, out_dir) if out_dir is not None else []
    if as_json:
        return emit_json({"backend": request.backend, "rows": rows})
    for path in written:
        out.print(f"wrote {path}")
    if written:
        out.print(written[1].read_text())


# Registers `conform` and `report` on `app`; imported here so that `main` sees them.
from xpuport import cli_conform  # noqa: E402, F401


def main() -> None:
    app()
