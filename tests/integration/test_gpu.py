"""On an NVIDIA GPU: the foundation's models and the ops conformance suite on `cuda`.

Marked `gpu`; run with `pytest -m gpu` (or `make test-gpu`). Without a GPU every test skips
and says why.
"""

from __future__ import annotations

import pytest
from integration_models import assert_matches_torch_and_onnxruntime

import xpuport
from xpuport.backends.base import CompileOptions
from xpuport.backends.cuda import CudaBackend

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CudaBackend().is_available(),
                       reason="no CUDA GPU (or TVM's CUDA runtime) on this machine"),
]
PROFILE = "nvidia/h100"


@pytest.mark.parametrize("library", [True, False], ids=["library", "tvm-only"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "encoder"])
def test_model_matches_torch_and_onnxruntime_on_cuda(name, library, exported, tmp_path):
    artifact = xpuport.compile(exported[name], "cuda", PROFILE, tmp_path / "art",
                               options=CompileOptions(library=library))
    # References on the CPU; TF32 is off in TVM's kernels and in the library calls
    # (cuda_kernels.in_full_float32): fp32 tolerances hold.
    assert_matches_torch_and_onnxruntime(artifact, name, exported[name])


def test_ops_suite_on_cuda_against_the_float64_reference(tmp_path):
    summary = xpuport.conform("cuda", tmp_path / "conform", profile=PROFILE, suite="ops", jobs=2)
    counts = summary["counts"]
    print("cuda ops suite:", counts, f"pass rate {summary['pass_rate']:.3f}")
    assert counts["pass"] > 0
    assert counts["crash"] == 0 and counts["timeout"] == 0
    assert summary["failures"] == [], summary["failures"][:10]
