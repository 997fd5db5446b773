"""The OpSpec database: one module per op family, each with a tuple SPECS."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import replace
from functools import cache

from xpuport.conformance.spec import OpSpec

FAMILIES = (
    "elementwise",
    "activations",
    "logical",
    "reductions",
    "matmul",
    "conv_pool",
    "normalization",
    "shape",
    "indexing",
    "casts",
    "attention",
)


@cache
def all_specs() -> tuple[OpSpec, ...]:
    """Every spec of every family, each stamped with its family name."""
    specs: list[OpSpec] = []
    for family in FAMILIES:
        module = importlib.import_module(f"{__name__}.{family}")
        specs.extend(replace(spec, family=family) for spec in module.SPECS)
    return tuple(specs)


def select(ops: Sequence[str] | None = None) -> tuple[OpSpec, ...]:
    """The specs of the named ops (all when None), in database order."""
    specs = all_specs()
    return specs if not ops else tuple(spec for spec in specs if spec.op in set(ops))
