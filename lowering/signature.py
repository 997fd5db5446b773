"""Check run-time inputs against an artifact's signature, naming the input and the fix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from xpuport.errors import InputError
from xpuport.ir.inspect import TensorSpec


def check_inputs(specs: Sequence[TensorSpec], inputs: Mapping[str, np.ndarray]) -> None:
    expected = [spec.name for spec in specs]
    missing = [name for name in expected if name not in inputs]
    unknown = sorted(set(inputs) - set(expected))
    if missing or unknown:
        raise InputError(
            f"inputs do not match the model: missing {missing}, unknown {unknown}",
            f"give exactly these inputs: {', '.join(expected)}",
        )
    bound: dict[str, int] = {}
    for spec in specs:
        _check_one(spec, np.asarray(inputs[spec.name]), bound)


def _check_one(spec: TensorSpec, array: np.ndarray, bound: dict[str, int]) -> None:
    if array.dtype.name != spec.dtype:
        raise InputError(
            f"input '{spec.name}' has dtype {array.dtype.name}, the model takes {spec.dtype}",
            f"convert it first, e.g. array.astype('{spec.dtype}')",
        )
    if array.ndim != len(spec.shape):
        raise InputError(
            f"input '{spec.name}' has shape {array.shape}, the model takes {_shape(spec)}",
            f"reshape it to {_shape(spec)}",
        )
    for axis, (dim, size) in enumerate(zip(spec.shape, array.shape, strict=True)):
        expected = bound.setdefault(dim, size) if isinstance(dim, str) else dim
        if size != expected:
            raise InputError(
                f"input '{spec.name}' has size {size} on axis {axis}, the model takes "
                f"{expected} there (shape {_shape(spec)})",
                f"give an array of shape {_shape(spec)}; symbolic dims must agree across inputs",
            )


def _shape(spec: TensorSpec) -> str:
    return "[" + ", ".join(str(d) for d in spec.shape) + "]"
