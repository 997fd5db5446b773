"""Library kernels for the host CPU: BLAS for matmul, torch's oneDNN for linear and conv2d.

numpy is always present, so matmul always has a library. When torch is installed, GEMMs with
a constant weight become oneDNN linear layers and conv2d goes to oneDNN's direct
convolutions in NHWC (backends/host_conv.py), each with its bias, residual add and
activation fused; the other large GEMMs go to torch too, to keep one thread pool. Without
torch, conv2d goes to numpy's BLAS through im2col. Every kernel reads TVM's tensors in place
through DLPack, uncopied.
"""

from __future__ import annotations

import importlib.util
import math
from functools import cache
from typing import Any

import numpy as np
import tvm
import tvm_ffi
from numpy.lib.stride_tricks import sliding_window_view

from xpuport.backends import host_conv
from xpuport.lowering.library import Library, packed_calls

_FLOATS = frozenset({"float32", "float64"})
_FLOAT32 = frozenset({"float32"})


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


# OpenBLAS runs a GEMM of fewer multiply-adds than this on the calling thread (its SMP
# threshold, 65536 x GEMM_MULTITHREAD_THRESHOLD 4): no pool wakes, nothing to dispatch.
SMALL_GEMM_MACS = 65536 * 4
# A model whose largest GEMM is at least this big sends its GEMMs to oneDNN: each oneDNN
# call costs about 20 us more than numpy's, repaid at 10-20% faster GEMMs only when large
# (MLP at batch 8: 0.026 ms on numpy, 0.07 ms on oneDNN; d768 encoder: 25 ms, 23.3 ms).
ONEDNN_GEMM_MACS = 1 << 24


def host_libraries(torch_gemms: bool = False, convolutions: bool = True,
                   gemms: bool = True) -> list[Library]:
    """What the CPU backend dispatches on this machine: the fastest library present per op.

    One thread pool per model, chosen per model (`torch_gemms`): OpenBLAS's workers spin
    for up to 2^28 cycles after a call, so beside torch's OpenMP workers each pool runs at
    a fraction of its speed (ResNet-50: 112 ms with its classifier GEMM on OpenBLAS, 53 ms
    on torch; an MLP at batch 64 with one GEMM on each: 8 ms instead of 0.1 ms). A model
    with convolutions, or with large GEMMs (`ONEDNN_GEMM_MACS`) on a host where oneDNN's
    GEMMs pay (backends/cpu.onednn_gemms_pay: AVX-512), runs them on torch: oneDNN's
    linear for a constant weight (bias and activation fused; 200-220 GFLOP/s on this 2-core
    host where OpenBLAS reaches 160-185), oneDNN's conv2d, torch's matmul for the rest, and
    torch's layer norm and softmax over the last axis (13-77 us on the encoders' shapes,
    where TVM's untuned kernels take 75-290 us); only GEMMs too small to be threaded stay
    with numpy. Other models keep numpy's BLAS and TVM's normalizations. Without
    `convolutions`, conv2d is left to TVM, and without `gemms`, matmul (lowering/tvm_kernels.py).
    """
    numpy = [Library("cpu", "numpy", "matmul", _FLOATS),
             Library("cpu", "numpy", "batch_matmul", _FLOATS)] if gemms else []
    if not torch_installed():
        return [*numpy, *([Library("cpu", "numpy", "conv2d", _FLOATS)] if convolutions else [])]
    torch_kernels = [
        Library("cpu", "torch", "linear", _FLOAT32, allocates=True, min_macs=SMALL_GEMM_MACS),
        Library("cpu", "torch", "matmul", _FLOATS, min_macs=SMALL_GEMM_MACS),
        Library("cpu", "torch", "batch_matmul", _FLOATS, min_macs=SMALL_GEMM_MACS),
        Library("cpu", "torch", "layer_norm", _FLOAT32, allocates=True),
        Library("cpu", "torch", "softmax", _FLOAT32, allocates=True),
    ]
    # NHWC where lowering/channels_last.py could move the model's convolutions there.
    convs = [Library("cpu", "torch", op, _FLOAT32, allocates=True, layout=layout)
             for layout in ("NHWC", "NCHW") for op in ("conv2d", "conv2d_epilogue")]
    return [*(torch_kernels if torch_gemms else []), *numpy, *(convs if convolutions else [])]


def thread_pools(module: Any) -> list[str]:
    """The libraries whose thread pools `module`'s kernels start: torch's OpenMP for any
    torch kernel, OpenBLAS's for numpy's convolutions and for its GEMMs of SMALL_GEMM_MACS
    or more (smaller ones run on the calling thread)."""
    pools = set()
    for name, call in packed_calls(module):
        library = name.split(".")[2] if name.startswith("xpuport.cpu.") else None
        if library == "torch" or (library == "numpy" and (
                name.endswith("conv2d") or _dps_gemm_macs(call) >= SMALL_GEMM_MACS)):
            pools.add(library)
    return sorted(pools)


def _dps_gemm_macs(call: Any) -> int:
    """Multiply-adds of a GEMM kernel's destination-passing call: out(..., M, N) of K each."""
    left, out = call.args[1].fields[0].ty.shape, call.ty_args[0].shape
    return math.prod(int(d) for d in out.values) * int(left[-1])


@cache
def register() -> None:
    """Register the kernels this process can run (torch's only where torch is installed)."""
    tvm_ffi.register_global_func("xpuport.cpu.numpy.matmul", _numpy_matmul, override=True)
    tvm_ffi.register_global_func("xpuport.cpu.numpy.batch_matmul", _numpy_matmul, override=True)
    tvm_ffi.register_global_func("xpuport.cpu.numpy.conv2d", _numpy_conv2d, override=True)
    if torch_installed():
        tvm_ffi.register_global_func("xpuport.cpu.torch.matmul", torch_matmul_into, override=True)
        tvm_ffi.register_global_func("xpuport.cpu.torch.batch_matmul", torch_matmul_into,
                                     override=True)
        tvm_ffi.register_global_func("xpuport.cpu.torch.conv2d_nhwc", host_conv.conv2d_nhwc,
                                     override=True)
        tvm_ffi.register_global_func("xpuport.cpu.torch.conv2d", host_conv.torch_conv2d,
                                     override=True)
        tvm_ffi.register_global_func("xpuport.cpu.torch.layer_norm", torch_layer_norm,
                                     override=True)
        tvm_ffi.register_global_func("xpuport.cpu.torch.softmax", torch_softmax, override=True)
        import torch

        if torch.backends.mkldnn.is_available():  # else an artifact using it names it missing
            tvm_ffi.register_global_func("xpuport.cpu.torch.linear", torch_linear, override=True)
            tvm_ffi.register_global_func("xpuport.cpu.torch.conv2d_epilogue_nhwc",
                                         host_conv.conv2d_epilogue_nhwc, override=True)
            tvm_ffi.register_global_func("xpuport.cpu.torch.conv2d_epilogue",
                                         host_conv.conv2d_epilogue, override=True)


def _numpy_matmul(a: Any, b: Any, out: Any) -> None:
    left, right, result = np.from_dlpack(a), np.from_dlpack(b), np.from_dlpack(out)
    if right.ndim == 2 and left.flags.c_contiguous and result.flags.c_contiguous:
        # (..., M, K) @ (K, N) is one GEMM; numpy would loop over the leading dimensions.
        np.matmul(left.reshape(-1, left.shape[-1]), right,
                  out=result.reshape(-1, result.shape[-1]))
    else:
        np.matmul(left, right, out=result)


def torch_matmul_into(a: Any, b: Any, out: Any) -> None:
    """torch's matmul on whatever device the tensors are on (MKL, cuBLAS, rocBLAS)."""
    import torch

    torch.matmul(torch.from_dlpack(a), torch.from_dlpack(b), out=torch.from_dlpack(out))


def torch_layer_norm(x: Any, gamma: Any, beta: Any, epsilon: float) -> Any:
    """Layer norm over the last axis, by torch (lowering/library.py checks the axes)."""
    import torch
    import torch.nn.functional as F  # torch's own convention

    data = torch.from_dlpack(x)
    return tvm.runtime.from_dlpack(F.layer_norm(
        data, data.shape[-1:], torch.from_dlpack(gamma), torch.from_dlpack(beta), epsilon))


def torch_softmax(x: Any) -> Any:
    """Softmax over the last axis, by torch."""
    import torch

    return tvm.runtime.from_dlpack(torch.softmax(torch.from_dlpack(x), -1))


# lowering/linear_epilogue.ACTIVATIONS' codes as oneDNN post-ops: (attr, algorithm).
_POST_OPS = {0: ("none", None), 1: ("relu", None), 2: ("gelu", "none"), 3: ("gelu", "tanh")}


def torch_linear(x: Any, w: Any, b: Any, *rest: Any) -> Any:
    """oneDNN's linear layer: x (..., K) @ w (K, N) + b, then either a residual added or an
    activation, applied by oneDNN on its own output (see lowering/linear_epilogue.py).
    `rest`: [residual], activation code."""
    import torch

    residual, activation = rest[:-1], rest[-1]
    data, bias = torch.from_dlpack(x), torch.from_dlpack(b)
    weight = torch.from_dlpack(w).t()  # oneDNN takes (N, K): a view, read as such
    linear = torch.ops.mkldnn._linear_pointwise
    if residual:
        result = linear.binary(data, torch.from_dlpack(residual[0]), weight, bias, "add")
    else:
        attr, algorithm = _POST_OPS[int(activation)]
        result = linear(data, weight, bias, attr, [], algorithm)
    return tvm.runtime.from_dlpack(result)


def _numpy_conv2d(x: Any, w: Any, *attributes_out: Any) -> None:
    """im2col through a strided view, then one BLAS contraction per group."""
    *attributes, out = attributes_out  # call_dps_packed appends the output
    sh, sw, top, left, bottom, right, dh, dw, groups = attributes
    data, weight, result = np.from_dlpack(x), np.from_dlpack(w), np.from_dlpack(out)
    padded = np.pad(data, ((0, 0), (0, 0), (top, bottom), (left, right)))
    kh, kw = weight.shape[2:]
    window = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    oh, ow = result.shape[2:]
    patches = sliding_window_view(padded, window, axis=(2, 3))
    patches = patches[:, :, : oh * sh : sh, : ow * sw : sw, ::dh, ::dw]  # N C OH OW KH KW
    in_group, out_group = weight.shape[1], weight.shape[0] // groups
    for g in range(groups):
        columns = patches[:, g * in_group : (g + 1) * in_group]
        kernel = weight[g * out_group : (g + 1) * out_group]
        result[:, g * out_group : (g + 1) * out_group] = np.tensordot(
            columns, kernel, axes=([1, 4, 5], [1, 2, 3])
        ).transpose(0, 3, 1, 2)
