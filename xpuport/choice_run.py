"""`tune`'s timing of a model's library choice (lowering/library_choice.py), in a process of
its own: `python -m xpuport.choice_run REQUEST.json` prints the choice as JSON.

Timed inside the tuning process, the d256 encoder with library dispatch ran 7.4 ms against
3.8-4.1 ms in a fresh one (its TVM side alike: 2.9 against 3.0 ms): what a search leaves
behind in its process is not what a compiled model runs beside, so the choice is not made
there.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from xpuport.backends.base import CompileOptions
from xpuport.errors import TuningError
from xpuport.lowering.artifact import Artifact
from xpuport.lowering.library_choice import LibraryChoice

ROUNDS = 2  # processes, one after the other; each side keeps its fastest median


def measure_in_own_process(model_path: str | Path, backend: str, profile: str,
                           options: CompileOptions, database: Path) -> LibraryChoice:
    """The choice timed in ROUNDS fresh processes. In one suite run a single process read
    every transformer's library side 2-10x its `bench` time (the d256 encoder 32.0 ms
    against 3.1-3.8 ms) while its TVM side read true, and later processes read both true:
    a second process guards the choice against it (its cause is not found)."""
    rounds = [_one_process(model_path, backend, profile, options, database)
              for _ in range(ROUNDS)]
    return LibraryChoice(library_ms=min(r.library_ms for r in rounds),
                         tvm_ms=min(r.tvm_ms for r in rounds))


def _one_process(model_path: str | Path, backend: str, profile: str,
                 options: CompileOptions, database: Path) -> LibraryChoice:
    request = {"model": str(model_path), "backend": backend, "profile": profile,
               "options": options.to_json(), "database": str(database)}
    with tempfile.TemporaryDirectory(prefix="xpuport-choice-") as scratch:
        file = Path(scratch) / "request.json"
        file.write_text(json.dumps(request))
        done = subprocess.run([sys.executable, "-m", "xpuport.choice_run", str(file)],
                              capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TuningError(f"timing {model_path} with and without library dispatch failed:\n"
                          f"{done.stderr.strip()[-2000:]}",
                          "the records are kept; compile the model with --no-library and "
                          "without to see which side fails, and report it")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return LibraryChoice(library_ms=measured["library_ms"], tvm_ms=measured["tvm_ms"])


def measure_choice(model_path: str | Path, backend: str, profile: str,
                   options: CompileOptions, database: Path) -> LibraryChoice:
    """Build the model with the database's records, library dispatch on and off, and time
    both in one run (benchmarks/harness.py: warm-up, interleaved blocks, medians)."""
    from xpuport.api import _compile
    from xpuport.benchmarks.harness import measure
    from xpuport.inputs import random_inputs

    sides = {"library": options, "tvm": dataclasses.replace(options, library=False)}
    with tempfile.TemporaryDirectory(prefix="xpuport-choice-") as scratch:
        artifacts = {
            name: _compile(model_path, backend, profile, Path(scratch) / name, options=side,
                           use_cache=False, on_step=None, strict=True, max_fallback=None,
                           tuning=database, follow_choice=False)
            for name, side in sides.items()}
        inputs = random_inputs(artifacts["library"].inputs)
        timings = {timing.engine: timing.median_ms
                   for timing in measure(taking_turns(artifacts, inputs))}
    return LibraryChoice(library_ms=timings["library"], tvm_ms=timings["tvm"])


def taking_turns(artifacts: Mapping[str, Artifact],
                 inputs: Mapping[str, Any]) -> dict[str, Callable[[], None]]:
    """Timed runners that set the runtime up for their own artifact (its thread count)
    whenever the one run before was another's: the untimed first run of each block."""
    last: list[str] = [""]

    def runner(name: str, artifact: Artifact) -> Callable[[], None]:
        run = artifact.timed_runner(inputs)

        def run_settled() -> None:
            if last[0] != name:
                artifact.prepare_runtime()
                last[0] = name
            run()

        return run_settled

    return {name: runner(name, artifact) for name, artifact in artifacts.items()}


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    options = CompileOptions(**request["options"])
    choice = measure_choice(request["model"], request["backend"], request["profile"],
                            options, Path(request["database"]))
    print(json.dumps(choice.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
