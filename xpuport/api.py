"""The Python API: export, compile, load. The CLI is a thin face over these."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tvm_ffi

from xpuport.backends.base import Backend, CompileOptions, TvmBackend
from xpuport.backends.registry import get_backend
from xpuport.cache import CompileCache, compile_key, source_digest
from xpuport.choice_run import measure_in_own_process
from xpuport.errors import CompileError, ProfileError, TuningError
from xpuport.hw_profiles import HardwareProfile, load_profile
from xpuport.ir.canonicalize import canonicalize
from xpuport.ir.export import export_module
from xpuport.ir.inspect import TensorSpec, graph_hash, summarize
from xpuport.ir.load import load_model
from xpuport.lowering.artifact import (
    GRAPH,
    LIBRARY,
    Artifact,
    check_replaceable,
    install,
    staged_directory,
    write_artifact,
)
from xpuport.lowering.library import collecting_thread_pools, library_calls
from xpuport.lowering.library_choice import LibraryChoice, choice_key, read_choice, save_choice
from xpuport.lowering.partition import Placement, check_fallback, place
from xpuport.lowering.pipeline import build
from xpuport.lowering.regions import build_regions
from xpuport.lowering.to_relax import to_relax
from xpuport.lowering.tuning import (
    TuneResult,
    TuningDatabase,
    collecting_stale_baselines,
    collecting_tuned_kernels,
    create_database,
    default_database,
    named_database,
    open_database,
    tune_module,
)

StepCallback = Callable[[str], None]


def export(
    module: Any,
    inputs: Mapping[str, Sequence[int]] | Sequence[TensorSpec],
    path: str | Path,
    *,
    dynamic_batch: bool = False,
) -> Path:
    """Export a torch.nn.Module to ONNX. `inputs`: {name: shape} (float32) or TensorSpecs."""
    specs = (
        [TensorSpec(name, tuple(shape), "float32") for name, shape in inputs.items()]
        if isinstance(inputs, Mapping)
        else list(inputs)
    )
    return export_module(module, specs, path, dynamic_batch=dynamic_batch)


def resolve_profile(backend: Backend, profile: str | None) -> HardwareProfile:
    resolved = load_profile(profile or backend.default_profile())
    if resolved.backend != backend.name:
        raise ProfileError(
            f"profile '{resolved.name}' describes a '{resolved.backend}' device, not a "
            f"'{backend.name}' one",
            f"pick a profile whose backend is '{backend.name}' (see `xpuport profiles`)",
        )
    return resolved


def compile(  # noqa: A001  # the verb users expect: xpuport.compile(...)
    model_path: str | Path,
    backend: str = "cpu",
    profile: str | None = None,
    output_dir: str | Path | None = None,
    *,
    options: CompileOptions | None = None,
    use_cache: bool = True,
    on_step: StepCallback | None = None,
    strict: bool = False,
    max_fallback: int | None = None,
    tuning: str | Path | bool = True,
) -> Artifact:
    """Compile an ONNX file for a backend. Without `output_dir` the cached artifact is used.

    Nodes the backend declines run on the host (onnxruntime's CPU provider) in their own
    regions; `strict` forbids that, `max_fallback` bounds how many nodes may fall back.
    `tuning`: True applies the profile's default tuning database when there is one, a path
    names a database, False compiles without records. Where `tune` measured this model
    faster with library dispatch off, the database says so and compile follows it
    (lowering/library_choice.py; the manifest's tuning.library_choice).
    """
    return _compile(model_path, backend, profile, output_dir, options=options,
                    use_cache=use_cache, on_step=on_step, strict=strict,
                    max_fallback=max_fallback, tuning=tuning, follow_choice=True)


def _compile(
    model_path: str | Path, backend: str, profile: str | None, output_dir: str | Path | None,
    *, options: CompileOptions | None, use_cache: bool, on_step: StepCallback | None,
    strict: bool, max_fallback: int | None, tuning: str | Path | bool, follow_choice: bool,
) -> Artifact:
    """compile; `tune` builds both sides of a library choice without following the last."""
    step = on_step or (lambda _name: None)
    out = Path(output_dir) if output_dir is not None else None
    if out is None and not use_cache:
        raise ValueError("compile(use_cache=False) needs an output_dir")
    if out is not None:
        check_replaceable(out)
    opts = options or CompileOptions()
    step("load")
    model = load_model(model_path)
    backend_impl = get_backend(backend)
    if not isinstance(backend_impl, TvmBackend):
        raise CompileError(
            f"backend '{backend}' runs ONNX graphs in its own engine and builds no artifact",
            "compile for a TVM backend (see `xpuport backends`); use this one as a reference "
            f"through `xpuport conform --backend {backend}`",
        )
    resolved = resolve_profile(backend_impl, profile)
    database = _tuning_database(backend_impl, resolved, tuning)
    if database is not None:
        opts = dataclasses.replace(opts, tuning_db=str(database.path))
    source_hash = graph_hash(model)
    choice = _library_choice(database, source_hash, opts) if follow_choice else None
    build_options = dataclasses.replace(opts, library=False) \
        if choice is not None and not choice.library else opts
    backend_key = backend_impl.cache_key(resolved)
    records_digest = database.digest() if database is not None else None
    identity = {**opts.to_json(), "tuning_db": records_digest}
    key = compile_key(source_hash, backend_key, resolved.to_json(), identity)
    cache = CompileCache() if use_cache else None
    cached = cache.lookup(key) if cache else None
    if cached is not None:
        step("cache hit")
        check_fallback(Artifact(cached).manifest.get("fallback", []), strict, max_fallback)
        return _deliver(cached, out)
    step("canonicalize")
    canonical, placement = _canonical_placement(model, backend_impl, resolved, opts)
    summary = summarize(canonical)
    placement_json = placement.to_json()
    fallback = placement_json["fallback"]
    check_fallback(fallback, strict, max_fallback)
    step("build")
    started = time.perf_counter()
    with collecting_tuned_kernels() as tuned_kernels, collecting_stale_baselines() as stale, \
            collecting_thread_pools() as pools:
        libraries, blobs, regions = _build(canonical, placement, backend_impl, resolved,
                                            build_options)
    blobs[GRAPH] = canonical.SerializeToString()
    for executable in libraries.values():
        blobs.update(backend_impl.package(executable, resolved))
    calls = _library_calls(libraries.values())
    placement_json["library_calls"] = calls
    fields = {
        "backend": backend_impl.name,
        "backend_cache_key": backend_key,
        "profile": resolved.name,
        "target": str(backend_impl.target(resolved)),
        "options": opts.to_json(),
        "inputs": [spec.to_json() for spec in summary.inputs],
        "outputs": [spec.to_json() for spec in summary.outputs],
        "graph_hash": summary.graph_hash,
        "source_hash": source_hash,
        "compile_seconds": round(time.perf_counter() - started, 3),
        "fallback": fallback,
        "decomposed": placement_json["decomposed"],
        "library_calls": calls,
        # Host regions run on onnxruntime, whose pool spins as OpenBLAS's and torch's do.
        "host_thread_pools": sorted({*pools, *(["onnxruntime"] if regions else [])}),
        "tuning": {"database": str(database.path), "digest": records_digest,
                   "tuned_kernels": sorted(set(tuned_kernels)),
                   # records not applied: tuned against another default schedule
                   "stale_kernels": sorted(set(stale)),
                   "library_choice": choice.to_json() if choice else None}
        if database is not None else None,
        **({"regions": regions} if regions else {}),
    }
    step("write")
    destination = out if out is not None else (cache.root / key if cache else Path())
    with staged_directory(destination) as staging:
        write_artifact(staging, libraries, blobs, placement_json, fields)
        if cache is not None:
            cache.store(key, staging)
        if out is not None:
            install(staging, out)
            return Artifact(out)
    assert cache is not None
    return Artifact(cache.root / key)


def _build(
    model: Any, placement: Placement, backend: TvmBackend, profile: HardwareProfile,
    options: CompileOptions,
) -> tuple[dict[str, Any], dict[str, bytes], list[dict[str, object]]]:
    """One library for an all-device graph; a library or ONNX file per region otherwise."""
    if not placement.fallback:
        return {LIBRARY: build(model, backend, profile, options)}, {}, []
    return build_regions(model, placement, backend, profile, options)


def _canonical_placement(model: Any, backend: TvmBackend, profile: HardwareProfile,
                         options: CompileOptions) -> tuple[Any, Placement]:
    """The graph `compile` lowers, and where its nodes run: tuning must see the same."""
    canonical = canonicalize(model, inline_functions=options.inline_functions)
    return place(canonical, backend, profile)


def _library_choice(database: TuningDatabase | None, source_hash: str,
                    options: CompileOptions) -> LibraryChoice | None:
    """The database's measured choice for this model, where library dispatch is asked for."""
    if database is None or not options.library:
        return None
    return read_choice(database.path,
                       choice_key(source_hash, options.to_json(), source_digest()))


def _tuning_database(backend: TvmBackend, profile: HardwareProfile,
                     tuning: str | Path | bool) -> TuningDatabase | None:
    if tuning is False or not backend.applies_tuning:
        return None
    if tuning is True:  # the profile's own database, where there is one
        return open_database(default_database(profile), profile, backend.target(profile))
    return named_database(Path(tuning), profile, backend.target(profile))


def tune(
    model_path: str | Path,
    backend: str = "cpu",
    profile: str | None = None,
    *,
    trials: int = 64,
    budget: float | None = None,
    database: str | Path | None = None,
    options: CompileOptions | None = None,
    on_progress: Callable[[int, str], None] | None = None,
) -> TuneResult:
    """MetaSchedule every kernel TVM generates for the model; records go to the profile's
    database (or `database`), which `compile` then applies.

    With library dispatch on, the model is tuned twice over one budget: as compile builds
    it (the kernels between library calls), then with every op in TVM; both are then
    built with the records and timed, and the faster is the database's library choice for
    this model (lowering/library_choice.py)."""
    backend_impl = get_backend(backend)
    if not isinstance(backend_impl, TvmBackend) or not backend_impl.applies_tuning:
        raise TuningError(f"backend '{backend}' applies no tuning records yet",
                          "tune for --backend cpu")
    resolved = resolve_profile(backend_impl, profile)
    opts = options or CompileOptions()
    model = load_model(model_path)
    canonical, placement = _canonical_placement(model, backend_impl, resolved, opts)
    if placement.fallback:
        raise TuningError(f"{model_path}: {len(placement.fallback)} node(s) run on the host",
                          "tune a model that runs wholly on the device (see `xpuport inspect`)")
    variants = _tuning_variants(to_relax(canonical), backend_impl, resolved, opts)
    target = backend_impl.target(resolved)
    path = Path(database) if database is not None else default_database(resolved)
    records = create_database(path, resolved, target)
    results = _tune_variants(variants, backend_impl, target, records, trials, budget,
                             on_progress or (lambda *_: None))
    result = TuneResult.combined(path, results)
    if result.tasks == 0:
        raise TuningError("nothing to tune: every kernel of this model is a library call",
                          "compile it as is, or tune with --no-library to tune TVM's kernels")
    if len(results) == 2:  # both sides tuned: the choice is between their best
        choice = measure_in_own_process(model_path, backend, resolved.name, opts, path)
        save_choice(path, choice_key(graph_hash(model), opts.to_json(), source_digest()),
                    choice)
        result = dataclasses.replace(result, library_choice=choice)
    return result


def _tuning_variants(module: Any, backend: TvmBackend, profile: HardwareProfile,
                     options: CompileOptions) -> list[Any]:
    """The fused module as compile builds it, then, where library dispatch changed it, the
    one without library dispatch."""
    dispatched = backend.fused_kernels(module, profile, options)
    if not options.library:
        return [dispatched]
    own = backend.fused_kernels(module, profile, dataclasses.replace(options, library=False))
    return [dispatched] if tvm_ffi.structural_equal(dispatched, own) else [dispatched, own]


def _tune_variants(variants: list[Any], backend: TvmBackend, target: Any,
                   records: TuningDatabase, trials: int, budget: float | None,
                   on_progress: Callable[[int, str], None]) -> list[TuneResult]:
    """Tune each variant with what the ones before it left of `trials` and `budget`; one the
    budget left nothing for marks the run as ended by the budget (and no choice is made)."""
    results: list[TuneResult] = []
    started = time.monotonic()
    for module in variants:
        trials_left = trials - sum(result.trials for result in results)
        budget_left = None if budget is None else budget - (time.monotonic() - started)
        if budget_left is not None and budget_left <= 0:
            if results:
                results[-1] = dataclasses.replace(results[-1], out_of_budget=True)
            break
        if trials_left <= 0:
            break
        backend.prepare_tuning(module)
        results.append(tune_module(module, target, records, trials_left, budget_left,
                                   on_progress, backend.default_schedules()))
    return results


def _library_calls(executables: Iterable[Any]) -> dict[str, int]:
    """Kernel name -> call sites, over every device library of the artifact."""
    total: Counter[str] = Counter()
    for executable in executables:
        total.update(library_calls(executable))
    return dict(sorted(total.items()))


def _deliver(cached: Path, out: Path | None) -> Artifact:
    if out is None:
        return Artifact(cached)
    with staged_directory(out) as staging:
        shutil.copytree(cached, staging, dirs_exist_ok=True)
        install(staging, out)
    return Artifact(out)


def load(path: str | Path) -> Artifact:
    """Open and verify an artifact directory written by `compile`."""
    return Artifact(path)


def conform(
    backend: str,
    out: str | Path,
    *,
    profile: str | None = None,
    suite: str = "ops",
    ops: Sequence[str] = (),
    dtypes: Sequence[str] = (),
    jobs: int = 1,
    resume: bool = False,
    fallback: bool = False,
    library: bool = True,
    tuning_db: str | Path | None = None,
) -> dict[str, Any]:
    """Run a conformance suite on a backend into `out`; returns report.json's content.

    `fallback` compiles each case as `compile` does, declined nodes on the host; `tuning_db`
    applies that tuning database's records to every build."""
    from xpuport.conformance.conform import ConformRequest
    from xpuport.conformance.conform import conform as run_conformance
    from xpuport.conformance.report import summarize, write_documents
    from xpuport.conformance.results import read_run
    from xpuport.conformance.runner import RunOptions

    impl = get_backend(backend)
    resolved = resolve_profile(impl, profile)
    folder = Path(out)
    request = ConformRequest(impl.name, folder, resolved.name, suite, tuple(ops), tuple(dtypes),
                             resume, RunOptions(jobs=jobs, fallback=fallback, library=library,
                                                tuning_db=str(tuning_db) if tuning_db else None))
    results = run_conformance(request, impl, resolved)
    summary = summarize(read_run(folder), results)
    write_documents(folder, summary, results)
    return summary
