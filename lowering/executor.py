"""Runs a multi-region artifact: device regions on the backend's TVM runtime, host regions on
onnxruntime's CPU provider, in order, counting every tensor that crosses host <-> device.

A crossing goes through DLPack without a copy where the memory allows it: always from a
CPU device to the host, and to a CPU device when the host array is C-contiguous and aligned
as TVM's kernels require (64 bytes; onnxruntime's allocator aligns so). Otherwise it is
copied; either way it is counted, and `copied_bytes` says what the copies cost."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import tvm
from tvm import relax

from xpuport.backends.base import TvmBackend


@dataclass
class Transfers:
    """Tensors moved between host and device in one run: how many shared their memory
    through DLPack, and the bytes of those that had to be copied."""

    to_device: int = 0
    to_host: int = 0
    zero_copy: int = 0
    copied_bytes: int = 0
    by_region: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"to_device": self.to_device, "to_host": self.to_host,
                "zero_copy": self.zero_copy, "copied_bytes": self.copied_bytes,
                "by_region": {str(k): v for k, v in self.by_region.items()}}


class RegionExecutor:
    """Loads every region of an artifact once; `run` executes them in order."""

    def __init__(self, folder: Path, regions: Sequence[Mapping[str, Any]],
                 backend: TvmBackend) -> None:
        self.regions = list(regions)
        self.device = backend.device()
        self.runners: dict[int, Any] = {}
        for region in self.regions:
            path = str(folder / region["file"])
            if region["place"] == "device":
                self.runners[region["index"]] = relax.VirtualMachine(
                    tvm.runtime.load_module(path), self.device)
            else:
                self.runners[region["index"]] = ort.InferenceSession(
                    path, providers=["CPUExecutionProvider"])
        self.last = Transfers()

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
        values: dict[str, Any] = dict(feeds)  # numpy arrays live on the host, tvm tensors not
        copies: dict[tuple[str, bool], Any] = {}  # a value moves once however many read it
        self.last = Transfers()
        for region in self.regions:
            on_device = region["place"] == "device"
            args = [self._fetch(values, copies, name, on_device, region["index"])
                    for name in region["inputs"]]
            runner = self.runners[region["index"]]
            if on_device:
                results = list(flatten_values(runner["main"](*args)))
            else:
                results = runner.run(list(region["outputs"]), dict(zip(
                    region["inputs"], args, strict=True)))
            values.update(zip(region["outputs"], results, strict=True))
        return [self._fetch(values, copies, name, False, -1) for name in outputs]

    def _fetch(self, values: dict[str, Any], copies: dict[tuple[str, bool], Any], name: str,
               on_device: bool, region: int) -> Any:
        value = values[name]
        if isinstance(value, np.ndarray) != on_device:
            return value  # already where it is needed
        if (name, on_device) not in copies:
            copies[(name, on_device)] = self._move(value, on_device, region)
        return copies[(name, on_device)]

    def _move(self, value: Any, to_device: bool, region: int) -> Any:
        if to_device:
            self.last.to_device += 1
            moved, shared = to_device_tensor(value, self.device)
        else:
            self.last.to_host += 1
            moved, shared = to_host_array(value)
        if shared:
            self.last.zero_copy += 1
        else:
            self.last.copied_bytes += moved.nbytes if isinstance(moved, np.ndarray) \
                else value.nbytes
        self.last.by_region[region] = self.last.by_region.get(region, 0) + 1
        return moved


TVM_ALIGNMENT = 64  # what tvm.runtime.from_dlpack demands: its kernels assume aligned data


def to_device_tensor(array: np.ndarray, device: Any) -> tuple[Any, bool]:
    """The array as a TVM tensor on `device`, and whether it shares the array's memory."""
    array = np.asarray(array)
    if (device.dlpack_device_type() == _CPU and array.flags.c_contiguous and array.size
            and array.ctypes.data % TVM_ALIGNMENT == 0 and array.dtype.kind != "V"):
        return tvm.runtime.from_dlpack(array), True
    return tvm.runtime.tensor(np.asarray(array, order="C"), device), False


def to_host_array(tensor: Any) -> tuple[np.ndarray, bool]:
    """A TVM tensor as a numpy array, and whether it shares the tensor's memory."""
    if tensor.device.dlpack_device_type() == _CPU and "bfloat" not in str(tensor.dtype) \
            and "float8" not in str(tensor.dtype):
        return np.from_dlpack(tensor), True
    return tensor.numpy(), False


_CPU = 1  # DLPack's kDLCPU


def flatten_values(value: Any) -> Iterator[Any]:
    """The VM's result, flat: tensors stay where they are; a shape (Shape's int64 output)
    becomes a host array."""
    if isinstance(value, tvm.runtime.Tensor):
        yield value
    elif isinstance(value, tvm.runtime.ShapeTuple):
        yield np.asarray(list(value), dtype=np.int64)
    else:
        for item in value:
            yield from flatten_values(item)
