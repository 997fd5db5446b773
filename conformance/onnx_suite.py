"""onnx_suite."""
