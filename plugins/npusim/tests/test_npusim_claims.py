"""What npusim takes is decided from the profile, and every decline says why."""

from __future__ import annotations

import numpy as np
import pytest
from npusim_graphs import node_of, one_node

from xpuport.hw_profiles import load_profile
from xpuport_npusim.backend import NpuSimBackend

ASCEND_910B = load_profile("huawei/ascend-910b")
ASCEND_910 = load_profile("huawei/ascend-910")
backend = NpuSimBackend()


def claim(model, profile=ASCEND_910B):
    return backend.supports(node_of(model), profile)


def matmul(dtype, shape_a=(4, 32), shape_b=(32, 8)):
    out = [*shape_a[:-1], shape_b[-1]]
    return one_node("MatMul", {"a": list(shape_a), "b": list(shape_b)}, out, dtype)


def test_the_matrix_unit_takes_its_input_dtypes_and_says_how_it_computes():
    support = claim(matmul("float16"))
    assert support.supported
    assert support.reason == ("matrix unit: float16 inputs, float32 accumulation, "
                              "16x16x16 tiles")


def test_float32_matmul_is_declined_rather_than_rounded_silently():
    support = claim(matmul("float32"))
    assert not support.supported
    assert "takes float16, bfloat16, not float32" in support.reason
    assert "never rounds inputs silently" in support.reason


def test_the_profile_decides_bfloat16():
    assert claim(matmul("bfloat16"), ASCEND_910B).supported
    on_910 = claim(matmul("bfloat16"), ASCEND_910)
    assert not on_910.supported and "bfloat16" in on_910.reason


def test_float64_is_not_on_the_chip():
    support = claim(one_node("Relu", {"x": [4]}, [4], "float64"))
    assert not support.supported and "float64" in support.reason


def test_a_row_larger_than_the_on_chip_buffer_is_declined_with_the_figures():
    fits = claim(one_node("Softmax", {"x": [2, 1024]}, [2, 1024], axis=-1))
    assert fits.supported
    row = 192 * 1024 // 8 + 1  # input and result rows in float32 exceed 192 KiB by 8 bytes
    over = claim(one_node("Softmax", {"x": [2, row]}, [2, row], axis=-1))
    assert not over.supported
    assert f"a row of {row} elements" in over.reason and "192 KiB" in over.reason


def test_a_larger_buffer_takes_the_same_row():
    row = 192 * 1024 // 8 + 1
    assert claim(one_node("Softmax", {"x": [2, row]}, [2, row], axis=-1), ASCEND_910).supported


@pytest.mark.parametrize(("model", "phrase"), [
    (one_node("Gather", {"x": [4, 3]}, [3], constants=[("i", np.int64(1))], axis=0),
     "no kernel for Gather"),
    (one_node("Relu", {"x": ["n", 3]}, ["n", 3]), "static shapes only"),
    (one_node("Relu", {"x": [0, 3]}, [0, 3]), "non-empty tensors only"),
    (one_node("Reshape", {"x": [4, 3], "s": [2]}, [3, 4], "float16"), "as a constant"),
])
def test_declines_name_the_reason(model, phrase):
    support = claim(model)
    assert not support.supported and phrase in support.reason


def test_data_movement_is_exact_in_any_profile_dtype():
    model = one_node("Reshape", {"x": [4, 3]}, [3, 4], "float16",
                     constants=[("s", np.array([3, 4], np.int64))])
    support = claim(model)
    assert support.supported and support.reason == "data movement: exact"


def test_a_profile_for_another_target_is_refused():
    from xpuport.errors import ProfileError

    with pytest.raises(ProfileError, match='kind = "llvm"'):
        backend.supports(node_of(matmul("float16")), load_profile("onnxruntime/cpu"))
