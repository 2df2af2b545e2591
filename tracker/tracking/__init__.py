"""Tracking: per-face tracks with stable ids, crops from the previous landmarks, identity held per track."""

from tracker.tracking.track import HeldMean, Track
from tracker.tracking.tracker import Tracker, TrackerConfig

__all__ = ["HeldMean", "Track", "Tracker", "TrackerConfig"]
