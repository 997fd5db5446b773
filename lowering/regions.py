"""Cut a placed graph into one ONNX model per region, with the values that cross between them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import onnx
import onnxruntime as ort
from onnx.utils import Extractor

from xpuport.backends.base import CompileOptions, TvmBackend
from xpuport.errors import CompileError
from xpuport.hw_profiles import HardwareProfile
from xpuport.lowering.partition import Place, Placement
from xpuport.lowering.pipeline import build


@dataclass(frozen=True)
class Region:
    index: int
    place: Place
    model: onnx.ModelProto
    inputs: tuple[str, ...]  # values it reads from the caller or from earlier regions
    outputs: tuple[str, ...]  # values later regions or the caller read from it

    def to_json(self, file: str) -> dict[str, object]:
        return {"index": self.index, "place": self.place, "file": file,
                "inputs": list(self.inputs), "outputs": list(self.outputs)}


def split(model: onnx.ModelProto, placement: Placement) -> list[Region]:
    """The regions of `placement`, in execution order, as self-contained ONNX models."""
    graph = model.graph
    region_at = [p.region for p in placement.nodes]  # partition keeps the graph's node order
    constants = {init.name for init in graph.initializer}
    producer = {out: region_at[i] for i, node in enumerate(graph.node) for out in node.output}
    readers: dict[str, set[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            readers.setdefault(name, set()).add(region_at[i])
    final = {output.name for output in graph.output}
    extractor = Extractor(model)
    regions = []
    for index, place, _ in placement.regions():
        members = [n for i, n in enumerate(graph.node) if region_at[i] == index]
        inputs = _ordered(name for n in members for name in n.input
                          if name and name not in constants and producer.get(name) != index)
        outputs = _ordered(out for n in members for out in n.output
                           if out in final or readers.get(out, set()) - {index})
        try:
            sub = extractor.extract_model(list(inputs), list(outputs))
        except (KeyError, onnx.checker.ValidationError) as exc:
            raise CompileError(f"cannot cut region {index} out of the graph: {exc}",
                               "report the model to xpuport with `xpuport inspect` output") from exc
        regions.append(Region(index, place, sub, inputs, outputs))
    return regions


def _ordered(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def build_regions(
    model: onnx.ModelProto, placement: Placement, backend: TvmBackend,
    profile: HardwareProfile, options: CompileOptions,
) -> tuple[dict[str, Any], dict[str, bytes], list[dict[str, object]]]:
    """Libraries for device regions, ONNX files for host regions, and their manifest rows."""
    libraries: dict[str, Any] = {}
    blobs: dict[str, bytes] = {}
    rows = []
    for region in split(model, placement):
        if region.place == "device":
            file = f"region-{region.index}.so"
            libraries[file] = build(region.model, backend, profile, options)
        else:
            file = f"region-{region.index}.onnx"
            blobs[file] = region.model.SerializeToString()
            _check_host(region, blobs[file])
        rows.append(region.to_json(file))
    return libraries, blobs, rows


def _check_host(region: Region, model: bytes) -> None:
    """A host region must run on onnxruntime's CPU provider: find out now, not at run time."""
    try:
        ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        ops = sorted({node.op_type for node in region.model.graph.node})
        raise CompileError(
            f"host region {region.index} ({', '.join(ops)}) cannot run on onnxruntime either: "
            f"{str(exc).strip().splitlines()[0]}",
            "no engine here runs these nodes: change the model or report the ops to xpuport",
        ) from exc
