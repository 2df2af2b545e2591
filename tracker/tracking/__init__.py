"""Tracking: per-face tracks with stable ids, crops from the previous landmarks, identity held per track."""

from tracker.tracking.track import IdentityAggregator, Track
from tracker.tracking.tracker import Tracker, TrackerConfig

__all__ = ["IdentityAggregator", "Track", "Tracker", "TrackerConfig"]
