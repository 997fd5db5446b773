"""The common operator conformance suite: every backend checked against a float64 reference.

`pytest --pyargs xpuport.conformance --xpuport-backend=B` runs it through pytest (the plugin
is registered under the `pytest11` entry point); `xpuport conform` runs it from the CLI.
"""
