"""shape."""

from __future__ import annotations

from xpuport.conformance.spec import OpSpec

SPECS: tuple[OpSpec, ...] = ()
