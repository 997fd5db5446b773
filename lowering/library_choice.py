"""Whether a model runs faster with its heavy ops on the host's libraries or in TVM's tuned
kernels: measured by `xpuport tune`, kept in the tuning database, followed by `compile`.

Library dispatch wins untuned, but a tuned TVM GEMM can beat the library call it replaces
(the d256 encoder at batch 1: 0.82x onnxruntime tuned in TVM, 1.13x on the libraries) or lose
to it (the d768 encoder at batch 8: 1.22x against 1.05x). Which one wins depends on the model,
its batch and the host, so `tune` times both whole models and records the faster; a team that
shares the database shares the choice with the records it rests on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpuport.errors import TuningError
from xpuport.lowering.tuning_baseline import replace_json

CHOICES = "library-choices.json"


@dataclass(frozen=True)
class LibraryChoice:
    library_ms: float  # median of the model with library dispatch and the database's records
    tvm_ms: float  # the same, library dispatch off: every kernel TVM's, tuned where recorded

    @property
    def library(self) -> bool:
        return self.library_ms <= self.tvm_ms

    def to_json(self) -> dict[str, Any]:
        return {"library": self.library, "library_ms": self.library_ms, "tvm_ms": self.tvm_ms}


def choice_key(source_hash: str, options: Mapping[str, Any], code: str) -> str:
    """A model and the options it was measured with, but for library dispatch and the
    database, which the choice is about; and the xpuport code that timed it (`code`:
    cache.source_digest). A new schedule can turn a choice around (AVX-512 GEMMs in wider
    steps took the d768 encoder's TVM side from slower than oneDNN to 35% faster), so a
    choice timed by other code is not followed: compile dispatches as it does untuned, and
    tuning again times the choice afresh."""
    rest = {k: v for k, v in sorted(options.items()) if k not in ("library", "tuning_db")}
    return hashlib.sha256(json.dumps([source_hash, rest, code]).encode()).hexdigest()[:24]


def read_choices(database: Path) -> dict[str, LibraryChoice]:
    file = database / CHOICES
    if not file.is_file():
        return {}
    try:
        raw = json.loads(file.read_text())
        return {key: LibraryChoice(float(value["library_ms"]), float(value["tvm_ms"]))
                for key, value in raw.items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TuningError(f"{file} is not a library-choice file xpuport wrote ({exc})",
                          f"delete {file} and run `xpuport tune` again to measure the choice "
                          "afresh; the tuning records beside it are kept") from exc


def read_choice(database: Path, key: str) -> LibraryChoice | None:
    return read_choices(database).get(key)


def save_choice(database: Path, key: str, choice: LibraryChoice) -> None:
    """Add or replace one model's choice."""
    choices = {name: value.to_json() for name, value in read_choices(database).items()}
    choices[key] = choice.to_json()
    replace_json(database / CHOICES, choices)
