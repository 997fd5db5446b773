"""The engines timed beside xpuport: onnxruntime, torch eager and torch.compile.

Each peer runs on xpuport's device (the host CPU, or the GPU for cuda/rocm) with its inputs
already there, and a GPU run waits for the device, as xpuport's own timed run does. On a GPU
torch runs in full float32 as xpuport's library calls do (TF32 off; torch's default lets
cuDNN use it), so that both sides compute the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from xpuport.backends.cuda_kernels import in_full_float32
from xpuport.errors import XpuportError

PEERS = ("onnxruntime", "torch", "torch.compile")
Runner = Callable[[], object]


def peer_device(backend: str) -> str:
    """Where peers run for a backend: torch calls ROCm GPUs "cuda" too."""
    return "cuda" if backend in ("cuda", "rocm") else "cpu"


def check_peers(peers: list[str], have_torch_model: bool) -> None:
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise XpuportError(f"unknown peer(s) {unknown} for --vs", f"use {', '.join(PEERS)}")
    if not have_torch_model and any(p.startswith("torch") for p in peers):
        raise XpuportError("torch peers need the torch model, and an .onnx file has none",
                           "bench the suite (`xpuport bench --suite`), or use --vs onnxruntime")


def peer_runner(peer: str, device: str, onnx_path: Path, module: object | None,
                feeds: Mapping[str, np.ndarray]) -> Runner:
    if peer == "onnxruntime":
        return _onnxruntime(device, onnx_path, feeds)
    return _torch(device, module, feeds, compiled=peer == "torch.compile")


def _onnxruntime(device: str, onnx_path: Path, feeds: Mapping[str, np.ndarray]) -> Runner:
    import onnxruntime as ort

    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise XpuportError(f"this onnxruntime has no {provider}",
                           "pip install onnxruntime-gpu, or drop onnxruntime from --vs")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=[provider])
    binding = session.io_binding()  # inputs uploaded once, outputs left on the device
    for name, array in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, device, 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, device)

    def run_once() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run_once


def _torch(device: str, module: object | None, feeds: Mapping[str, np.ndarray],
           compiled: bool) -> Runner:
    import torch

    assert isinstance(module, torch.nn.Module)
    if device == "cuda" and not torch.cuda.is_available():
        raise XpuportError("torch sees no GPU here", "install torch with CUDA, or bench cpu")
    model = module.to(device)
    inputs = [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in feeds.values()]
    if compiled:
        model = torch.compile(model)

    def run_once() -> None:
        with torch.inference_mode():
            model(*inputs)
        if device == "cuda":
            torch.cuda.synchronize()

    return in_full_float32(run_once) if device == "cuda" else run_once
