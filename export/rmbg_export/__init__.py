"""Model definitions, weight sources, ONNX export/conversion and model-repository writing."""
