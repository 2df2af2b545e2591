"""facetrack runtime: frames, sources, face model, tracking, temporal filters, pipeline, stream, render.

``import tracker`` needs only numpy, OpenCV, ONNX Runtime, pyzmq, msgpack and moderngl; torch and
TensorRT are imported only inside the modules that use them.
"""

__version__ = "0.1.0"
