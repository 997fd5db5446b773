"""xpuport's own decompositions: ONNX ops that have no function body and no TVM converter,
rewritten as ONNX ops that do. A rule returns the replacement nodes, or None when it does not
apply to this node (an attribute or type it does not handle). Inner value names are local:
decompose.py renames them under the node's name.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import NodeProto

Rule = Callable[[NodeProto, dict[str, onnx.TypeProto]], list[NodeProto] | None]

RULES: dict[str, Rule] = {}
