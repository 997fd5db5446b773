"""Tables the CLI prints for people (their --json twins are the objects' to_json)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Column, Table

from xpuport.lowering.partition import Placement


def print_placement(console: Console, placement: Placement) -> None:
    regions = Table("region", "runs on", "nodes",
                    title=f"placement on {placement.backend} ({placement.profile})")
    for region, place, count in placement.regions():
        regions.add_row(str(region), place, str(count))
    console.print(regions)
    if placement.decompositions:
        expanded = Table(Column("node", no_wrap=True), "op", "into nodes", "through",
                         title="declined nodes decomposed into nodes the backend takes")
        for item in placement.decompositions:
            expanded.add_row(item.node, item.op, str(len(item.members)), item.via)
        console.print(expanded)
    if not placement.fallback:
        console.print("every node runs on the device")
        return
    host = Table(Column("node", no_wrap=True), "op", "region", "reason",
                 title=f"{len(placement.fallback)} node(s) the backend declines")
    for node in placement.fallback:
        host.add_row(node.node, node.op, str(node.region), node.reason)
    console.print(host)
