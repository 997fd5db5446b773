"""lowering/signature.py: run-time inputs are checked against the signature, naming the input."""

from __future__ import annotations

import numpy as np
import pytest

from xpuport.errors import InputError
from xpuport.ir.inspect import TensorSpec
from xpuport.lowering.signature import check_inputs

SPECS = (
    TensorSpec("tokens", ("batch", "seq"), "int64"),
    TensorSpec("mask", ("batch", "seq"), "bool"),
    TensorSpec("scale", (4,), "float32"),
)


def _inputs(batch: int = 2, seq: int = 5) -> dict[str, np.ndarray]:
    return {
        "tokens": np.zeros((batch, seq), np.int64),
        "mask": np.ones((batch, seq), bool),
        "scale": np.ones(4, np.float32),
    }


def _refused(inputs, specs=SPECS) -> InputError:
    with pytest.raises(InputError) as info:
        check_inputs(specs, inputs)
    assert info.value.fix.strip()
    return info.value


@pytest.mark.parametrize(("batch", "seq"), [(1, 1), (2, 5), (7, 128)])
def test_valid_inputs_pass(batch, seq):
    check_inputs(SPECS, _inputs(batch, seq))


def test_static_and_scalar_specs_pass():
    specs = (TensorSpec("x", (2, 3), "float32"), TensorSpec("t", (), "float64"))

    check_inputs(specs, {"x": np.zeros((2, 3), np.float32), "t": np.float64(0.5)})


def test_missing_input():
    inputs = _inputs()
    del inputs["mask"]

    error = _refused(inputs)

    assert "missing ['mask']" in error.message
    assert "tokens, mask, scale" in error.fix


def test_unknown_input():
    inputs = {**_inputs(), "extra": np.zeros(1, np.float32)}

    error = _refused(inputs)

    assert "unknown ['extra']" in error.message


def test_wrong_dtype():
    inputs = {**_inputs(), "scale": np.ones(4, np.float64)}

    error = _refused(inputs)

    assert "'scale'" in error.message
    assert "float64" in error.message
    assert "float32" in error.fix


def test_wrong_rank():
    inputs = {**_inputs(), "tokens": np.zeros((2, 5, 1), np.int64)}

    error = _refused(inputs)

    assert "'tokens'" in error.message
    assert "(2, 5, 1)" in error.message
    assert "[batch, seq]" in error.message


def test_wrong_static_size():
    inputs = {**_inputs(), "scale": np.ones(3, np.float32)}

    error = _refused(inputs)

    assert "'scale'" in error.message
    assert "size 3 on axis 0" in error.message


def test_symbolic_dim_must_agree_across_inputs():
    inputs = {**_inputs(batch=2, seq=5), "mask": np.ones((2, 6), bool)}

    error = _refused(inputs)

    assert "'mask'" in error.message
    assert "size 6 on axis 1" in error.message
    assert "takes 5" in error.message


def test_symbolic_dims_are_bound_per_call():
    check_inputs(SPECS, _inputs(batch=2, seq=5))
    check_inputs(SPECS, _inputs(batch=3, seq=9))  # nothing carried over from the last call


def test_distinct_symbolic_dims_are_independent():
    specs = (TensorSpec("a", ("n",), "float32"), TensorSpec("b", ("m",), "float32"))

    check_inputs(specs, {"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)})
