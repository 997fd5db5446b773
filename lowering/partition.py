"""Placement: every node of the canonical graph to a device or host region, with the reason.

Regions alternate device, host, device... in one order. A node joins the earliest region of
its own kind that comes no earlier than any of its producers' regions (and after those of
the other kind), so regions are as large as the dependencies allow, and every edge runs from
a region to itself or a later one: the region graph has no cycle and executes in order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import onnx
import onnx_ir as ir

from xpuport.backends.base import Backend
from xpuport.errors import UnsupportedOpError
from xpuport.hw_profiles import HardwareProfile
from xpuport.lowering.decompose import Decomposition, decompose

Place = Literal["device", "host"]


@dataclass(frozen=True)
class NodePlacement:
    node: str
    op: str
    region: int
    place: Place
    reason: str  # how the backend runs it ("supported" or its own words) or why it declined
    origin: str = ""  # the declined node it replaces, when decompose.py expanded one

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.origin:
            del data["origin"]
        return data


@dataclass(frozen=True)
class Placement:
    backend: str
    profile: str
    nodes: tuple[NodePlacement, ...]
    decompositions: tuple[Decomposition, ...] = ()

    @property
    def fallback(self) -> tuple[NodePlacement, ...]:
        return tuple(node for node in self.nodes if node.place == "host")

    def regions(self) -> list[tuple[int, Place, int]]:
        """(region, place, node count) in execution order."""
        counts = Counter((n.region, n.place) for n in self.nodes)
        return [(region, place, count) for (region, place), count in sorted(counts.items())]

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "profile": self.profile,
            "regions": [{"region": r, "place": p, "nodes": n} for r, p, n in self.regions()],
            "fallback": [node.to_json() for node in self.fallback],
            "decomposed": [d.to_json() for d in self.decompositions],
            "nodes": [node.to_json() for node in self.nodes],
        }


def place(model: onnx.ModelProto, backend: Backend, profile: HardwareProfile
          ) -> tuple[onnx.ModelProto, Placement]:
    """Decompose what the backend declines where that makes it run there, then partition."""
    decomposed, done = decompose(model, backend, profile)
    return decomposed, partition(decomposed, backend, profile, tuple(done))


def partition(model: onnx.ModelProto, backend: Backend, profile: HardwareProfile,
              decompositions: tuple[Decomposition, ...] = ()) -> Placement:
    """Place every top-level node of the (topologically sorted) canonical `model`."""
    origins = {member: f"{d.op} '{d.node}' ({d.via})" for d in decompositions
               for member in d.members}
    graph = ir.from_proto(model).graph
    region_of: dict[str, int] = {}  # value name -> region index of its producer
    placed = []
    for index, node in enumerate(graph):
        support = backend.supports(node, profile)
        place: Place = "device" if support.supported else "host"
        producers = [region_of[v.name] for v in node.inputs
                     if v is not None and v.name is not None and v.name in region_of]
        earliest = max((_after(producer, place) for producer in producers), default=0)
        region = _first_of_kind(earliest, place)
        for value in node.outputs:
            if value.name is not None:
                region_of[value.name] = region
        name = node.name or f"{node.op_type}_{index}"
        reason = support.reason or ("supported" if support.supported else "declined")
        placed.append(NodePlacement(name, node.op_type, region, place, reason,
                                    origins.get(name, "")))
    return Placement(backend.name, profile.name, _compacted(placed), decompositions)


def _kind_of(region: int) -> Place:
    return "device" if region % 2 == 0 else "host"


def _after(producer: int, place: Place) -> int:
    """The earliest region a consumer of `place` may join, given its producer's region."""
    return producer if _kind_of(producer) == place else producer + 1


def _first_of_kind(earliest: int, place: Place) -> int:
    return earliest if _kind_of(earliest) == place else earliest + 1


def _compacted(nodes: list[NodePlacement]) -> tuple[NodePlacement, ...]:
    """Renumber the regions in use 0, 1, 2... keeping their order."""
    used = {index: rank for rank, index in enumerate(sorted({n.region for n in nodes}))}
    return tuple(replace(n, region=used[n.region]) for n in nodes)


def check_fallback(fallback: list[dict[str, Any]], strict: bool, max_fallback: int | None) -> None:
    """Refuse host fallback beyond what the user allows, naming every fallen-back node."""
    limit = 0 if strict else max_fallback
    if limit is None or len(fallback) <= limit:
        return
    shown = "\n    ".join(f"{n['node']} ({n['op']}): {n['reason']}" for n in fallback[:20])
    more = f"\n    ... and {len(fallback) - 20} more" if len(fallback) > 20 else ""
    allowed = "--strict allows none" if strict else f"--max-fallback allows {limit}"
    raise UnsupportedOpError(
        f"{len(fallback)} node(s) would run on the host, {allowed}:\n    {shown}{more}",
        "drop --strict / raise --max-fallback to accept host fallback, or pick a backend and "
        "profile that take these nodes",
    )
