"""Training of the regressor (extra ``train``): synthesis of labelled crops, losses, the loop, ONNX export."""
