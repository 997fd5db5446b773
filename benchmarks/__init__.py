"""The benchmark harness behind `xpuport bench`, and the models it measures."""
