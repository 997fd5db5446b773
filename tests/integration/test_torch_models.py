"""torch → ONNX → cpu artifact → outputs, checked against torch and onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from integration_models import ATOL, RTOL, assert_matches_torch_and_onnxruntime

import xpuport
from xpuport.backends.base import CompileOptions
from xpuport.benchmarks.models import MODELS, mlp


@pytest.mark.parametrize("mode", ["library", "default", "tvm-only"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "encoder"])
def test_model_matches_torch_and_onnxruntime(name, mode, exported, tmp_path, request):
    """Every path: the libraries (forced: these models are small enough for TVM's own
    kernels), what compile chooses (TVM's direct GEMMs and convolutions here), and TVM
    without library dispatch."""
    if mode == "library":
        request.getfixturevalue("convs_on_library")
        request.getfixturevalue("gemms_on_library")
    artifact = xpuport.compile(exported[name], "cpu", output_dir=tmp_path / "art",
                               options=CompileOptions(library=mode != "tvm-only"))
    assert bool(artifact.manifest["library_calls"]) == (mode == "library")
    assert_matches_torch_and_onnxruntime(artifact, name, exported[name])


def test_reloaded_artifact_gives_the_same_outputs(exported, tmp_path):
    compiled = xpuport.compile(exported["cnn"], "cpu", output_dir=tmp_path / "art")
    x = {"x": np.ones(MODELS["cnn"].inputs["x"], np.float32)}
    first = compiled.run(x)
    again = xpuport.load(tmp_path / "art").run(x)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])


def test_dynamic_batch_runs_any_batch(tmp_path):
    module = mlp()
    path = xpuport.export(module, {"x": (1, 64)}, tmp_path / "mlp.onnx", dynamic_batch=True)
    artifact = xpuport.compile(path, "cpu", output_dir=tmp_path / "art")
    assert isinstance(artifact.inputs[0].shape[0], str)
    for batch in (1, 3, 7):
        x = np.random.default_rng(batch).standard_normal((batch, 64)).astype(np.float32)
        (ours,) = artifact.run({"x": x}).values()
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        assert ours.shape == (batch, 10)
        np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=RTOL)
