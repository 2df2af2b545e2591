"""Capture sources: one interface (:class:`FrameSource`) for webcams, files, RealSense and synthetic faces."""

from tracker.sources.base import FrameSource

__all__ = ["FrameSource"]
