"""Face detection: find faces (boxes, scores, 5 landmarks) in a frame. YuNet through the Engine interface."""

from tracker.detection.yunet import Letterbox, YuNetDetector

__all__ = ["Letterbox", "YuNetDetector"]
