"""An Ascend-like NPU simulated on the CPU: a backend plugin that uses only xpuport's contract."""

__version__ = "0.1.0"
