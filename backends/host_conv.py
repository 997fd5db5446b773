"""torch's convolutions as library kernels: oneDNN on the host, cuDNN or MIOpen on a GPU.

On the host the CPU backend hands convolutions over in NHWC (lowering/channels_last.py), as
torch's channels-last tensors, which oneDNN computes without reordering the activations
(in NCHW where TVM could not carry NHWC through the model).
A conv fused with its epilogue always has a constant weight (lowering/conv_epilogue.py
matches only those), so its weight is reordered into oneDNN's blocked layout once, on the
first call, and reused: reordering ResNet-50's 25 M weights on every call took 14 ms of its
90 ms (oneDNN's verbose log, batch 1, 2-core AVX2 host). Results go back to TVM through
DLPack, uncopied (torch allocates 64-byte aligned).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import tvm

# Packed weights kept at most, in bytes: ResNet-50's take 100 MB. Least recently used first
# out; an artifact unloaded leaves its entries until then.
PACKED_WEIGHTS_BYTES = 1 << 30
# (data pointer, shape, strides, conv geometry, input shape) -> (weight, packed weight). The
# entry holds the weight itself, so no other tensor can take its memory while it is cached.
_packed: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()


def torch_conv2d(x: Any, w: Any, *attributes: int) -> Any:
    """torch's conv2d in NCHW on whatever device the tensors are on (oneDNN, cuDNN, MIOpen)."""
    import torch

    data, padding = _padded(torch.from_dlpack(x), attributes)
    return tvm.runtime.from_dlpack(
        _conv(data, torch.from_dlpack(w), padding, attributes).contiguous())


def conv2d_nhwc(x: Any, w: Any, *attributes: int) -> Any:
    """oneDNN's conv2d on NHWC activations and OHWI weights (any weight: not packed)."""
    data, weight = _channels_last(x, w)
    data, padding = _padded(data, attributes)
    return tvm.runtime.from_dlpack(_as_nhwc(_conv(data, weight, padding, attributes)))


def conv2d_epilogue(x: Any, w: Any, b: Any, *rest: Any) -> Any:
    """oneDNN's conv2d on NCHW activations and a constant OIHW weight, with its epilogue
    (see conv2d_epilogue_nhwc): for models whose layout stayed NCHW."""
    import torch

    data, weight = torch.from_dlpack(x), torch.from_dlpack(w)
    return tvm.runtime.from_dlpack(_fused_conv(data, weight, b, rest, to_layout=_same)
                                   .contiguous())


def conv2d_epilogue_nhwc(x: Any, w: Any, b: Any, *rest: Any) -> Any:
    """oneDNN's conv2d on NHWC activations and a constant OHWI weight, with its bias, then
    (optionally) a residual added and ReLU as oneDNN post-ops, in one pass over the output.
    `rest`: [residual], the 9 conv attributes, relu (0/1)."""
    result = _fused_conv(*_channels_last(x, w), b, rest, to_layout=_as_nchw_view)
    return tvm.runtime.from_dlpack(_as_nhwc(result))


def _fused_conv(data: Any, weight: Any, b: Any, rest: Sequence[Any],
                to_layout: Callable[[Any], Any]) -> Any:
    """The conv of `data` (NCHW-shaped) by the packed `weight`, its bias and post-ops;
    `to_layout` views the residual operand as NCHW."""
    import torch

    residual, attributes, relu = rest[:-10], rest[-10:-1], rest[-1]
    data, padding = _padded(data, attributes)
    sh, sw, *_, dh, dw, groups = attributes
    geometry = (padding, [sh, sw], [dh, dw], groups)
    packed = _packed_weight(weight, geometry, list(data.shape))
    bias = torch.from_dlpack(b)
    pointwise = torch.ops.mkldnn._convolution_pointwise
    unary = "relu" if relu else None
    if residual:
        other = to_layout(torch.from_dlpack(residual[0]))
        return pointwise.binary(data, other, packed, bias, *geometry, "add", None, unary,
                                [], None)
    return pointwise(data, packed, bias, *geometry, unary or "none", [], "")


def _same(tensor: Any) -> Any:
    return tensor


def _as_nchw_view(tensor: Any) -> Any:
    return tensor.permute(0, 3, 1, 2)


def _packed_weight(weight: Any, geometry: tuple[Any, ...], input_shape: list[int]) -> Any:
    """`weight` in the blocked layout oneDNN picks for this conv and input shape, packed on
    first use."""
    import torch

    key = (weight.data_ptr(), tuple(weight.shape), weight.stride(), str(weight.dtype),
           repr(geometry), tuple(input_shape))
    entry = _packed.get(key)
    if entry is None:
        packed = torch.ops.mkldnn._reorder_convolution_weight(weight, *geometry, input_shape)
        entry = _packed[key] = (weight, packed)
        _evict_beyond(PACKED_WEIGHTS_BYTES)
    _packed.move_to_end(key)
    return entry[1]


def _evict_beyond(limit: int) -> None:
    total = sum(w.numel() * w.element_size() for w, _ in _packed.values())
    while total > limit and len(_packed) > 1:
        weight, _ = _packed.popitem(last=False)[1]
        total -= weight.numel() * weight.element_size()


def _channels_last(x: Any, w: Any) -> tuple[Any, Any]:
    """NHWC activations and OHWI weights as torch's NCHW/OIHW tensors in channels-last
    memory: views, which oneDNN runs on without reordering them (as it would NCHW)."""
    import torch

    return _as_nchw_view(torch.from_dlpack(x)), _as_nchw_view(torch.from_dlpack(w))


def _as_nhwc(result: Any) -> Any:
    """A conv's NCHW-shaped result as a contiguous NHWC tensor: a view where oneDNN wrote
    channels-last, as it does for channels-last inputs."""
    return result.permute(0, 2, 3, 1).contiguous()


def _padded(data: Any, attributes: Sequence[int]) -> tuple[Any, list[int]]:
    """The input and the (symmetric) padding left for the conv: torch pads both sides
    alike, so an asymmetric padding is applied to the input first."""
    import torch.nn.functional as F  # torch's own convention

    top, left, bottom, right = attributes[2:6]
    if (top, left) == (bottom, right):
        return data, [top, left]
    return F.pad(data, (left, right, top, bottom)), [0, 0]


def _conv(data: Any, weight: Any, padding: list[int], attributes: Sequence[int]) -> Any:
    import torch
    import torch.nn.functional as F

    sh, sw, *_, dh, dw, groups = attributes
    with torch.no_grad():
        return F.conv2d(data, weight, None, (sh, sw), padding, (dh, dw), groups)
