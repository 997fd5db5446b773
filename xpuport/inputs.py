"""Run-time inputs: from .npy files named on the command line, or random for a signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xpuport.errors import InputError
from xpuport.ir.inspect import TensorSpec


def parse_input_files(pairs: Sequence[str]) -> dict[str, np.ndarray]:
    """`NAME=FILE.npy` pairs → arrays; each file is read with allow_pickle=False."""
    arrays = {}
    for pair in pairs:
        name, sep, file_name = pair.partition("=")
        if not sep or not name or not file_name:
            raise InputError(f"--input '{pair}' is not NAME=FILE.npy", "write e.g. --input x=x.npy")
        path = Path(file_name)
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"--input {name}: cannot read {path} as a .npy array ({exc})",
                "save the array with numpy.save(path, array)",
            ) from exc
    return arrays


def random_inputs(
    specs: Sequence[TensorSpec], seed: int = 0, dims: Mapping[str, int] | None = None
) -> dict[str, np.ndarray]:
    """Arrays for a signature: floats ~ N(0, 1), integers in [0, 2), bools at random.

    Symbolic dims take their size from `dims` (default 1 for any not given).
    """
    rng = np.random.default_rng(seed)
    sizes = dict(dims or {})
    return {spec.name: _random_array(rng, spec, sizes) for spec in specs}


def _random_array(rng: np.random.Generator, spec: TensorSpec, sizes: dict[str, int]) -> np.ndarray:
    shape = tuple(d if isinstance(d, int) else sizes.setdefault(d, 1) for d in spec.shape)
    dtype = np.dtype(spec.dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        # Small non-negative values stay valid as indices and token ids of any vocabulary.
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)
