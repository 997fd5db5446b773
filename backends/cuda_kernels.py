"""Library kernels on an NVIDIA GPU: cuBLAS and cuDNN through torch, or cuBLAS through cupy.

Whichever of the two is installed where the model is compiled is the one the artifact calls;
with neither, nothing is dispatched and TVM generates every kernel. The kernels work on TVM's
device tensors in place through DLPack. TVM and both libraries launch on the device's legacy
default stream, so a kernel is ordered after the TVM kernels that produced its inputs.

float32 stays float32: torch lets cuDNN convolve float32 in TF32 (10-bit mantissas) unless told
otherwise, and a user's `torch.set_float32_matmul_precision("high")` does the same to cuBLAS.
The torch kernels turn both off for the length of each call and restore the user's settings.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, wraps
from typing import Any

import tvm_ffi

from xpuport.backends.host_conv import torch_conv2d
from xpuport.backends.host_kernels import torch_matmul_into
from xpuport.lowering.library import Library

_FLOATS = frozenset({"float32", "float16", "bfloat16"})


def installed_library() -> str | None:
    """torch (cuBLAS and cuDNN) over cupy (cuBLAS only); None when neither is installed."""
    return next((n for n in ("torch", "cupy") if importlib.util.find_spec(n) is not None), None)


def cuda_libraries() -> list[Library]:
    name = installed_library()
    if name == "torch":
        return [Library("cuda", "torch", "matmul", _FLOATS),
                Library("cuda", "torch", "batch_matmul", _FLOATS),
                Library("cuda", "torch", "conv2d", _FLOATS, allocates=True)]
    if name == "cupy":  # cupy has no convolution of its own: TVM generates conv2d
        return [Library("cuda", "cupy", kind, _FLOATS - {"bfloat16"})
                for kind in ("matmul", "batch_matmul")]
    return []


@cache
def register() -> None:
    """Register the kernels of the libraries installed here (imported on first call)."""
    if importlib.util.find_spec("torch") is not None:
        for kind in ("matmul", "batch_matmul"):
            tvm_ffi.register_global_func(f"xpuport.cuda.torch.{kind}",
                                         in_full_float32(torch_matmul_into), override=True)
        tvm_ffi.register_global_func("xpuport.cuda.torch.conv2d", in_full_float32(torch_conv2d),
                                     override=True)
    if importlib.util.find_spec("cupy") is not None:
        for kind in ("matmul", "batch_matmul"):
            tvm_ffi.register_global_func(f"xpuport.cuda.cupy.{kind}", _cupy_matmul,
                                         override=True)


def _cupy_matmul(a: Any, b: Any, out: Any) -> None:
    import cupy  # type: ignore[import-not-found]  # optional, on GPU hosts only

    cupy.matmul(cupy.from_dlpack(a), cupy.from_dlpack(b), out=cupy.from_dlpack(out))


def in_full_float32(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """The kernel with cuBLAS's and cuDNN's TF32 paths off while it runs."""

    @wraps(kernel)
    def strict(*args: Any) -> Any:
        with _no_tf32():
            return kernel(*args)

    return strict


@contextmanager
def _no_tf32() -> Iterator[None]:
    import torch

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32 = cudnn.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved
