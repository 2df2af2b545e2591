"""Evaluation of the tracker's stages on annotated data (library side of ``facetrack eval ...``)."""
