"""The intermediate graph: ONNX, exported, validated, canonicalized, inventoried and hashed."""
