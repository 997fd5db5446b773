"""Move a model's convolutions to NHWC, once for the whole model, ahead of library dispatch.

oneDNN computes in a blocked or channels-last layout. Given NCHW tensors it reorders the
activations in and the result out on every call: the small CNN's four convs took 846 us so,
564 us on the same tensors kept channels-last (torch 2.13, 2-core AVX2 host). TVM's
ConvertLayout rewrites every conv2d to NHWC/OHWI and carries the layout through the ops
between them (bias adds, ReLU, pooling, residual adds), so the model transposes its input
and its last feature map once instead of each conv reordering twice. FoldConstant then
turns the transposed weights and biases back into constants, which the conv epilogue and
dispatch passes require of them.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax

from xpuport.lowering.library import has_op


def channels_last_pass() -> Any:
    """A module pass putting every conv2d of the module in NHWC with OHWI weights, or
    leaving the module as it is where TVM's ConvertLayout fails on it."""

    @tvm.transform.module_pass(opt_level=0, name="xpuport.ChannelsLast")  # type: ignore[untyped-decorator]
    def to_channels_last(module: Any, _context: Any) -> Any:
        if not has_op(module, "relax.nn.conv2d"):
            return module
        try:
            return tvm.transform.Sequential([
                relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]}),
                relax.transform.FoldConstant(),
            ])(module)
        except tvm.error.InternalError:
            # TVM could not carry NHWC through some op (its import of ONNX's Sum: a stack,
            # then a sum over the new axis): the model stays NCHW, its convs go to the
            # NCHW kernels, and the manifest's library_calls name those.
            return module

    return to_channels_last
