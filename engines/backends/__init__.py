"""Inference backends. Each module here is the only importer of its runtime library (onnxruntime,
tensorrt + pycuda, torch), so a missing library affects only the backend that needs it."""
