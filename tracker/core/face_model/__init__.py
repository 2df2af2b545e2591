"""The ICT-FaceKit face model: cache building, loading, and the ICT <-> ARKit expression mapping."""

from tracker.core.face_model.arkit import (
    ARKIT_NAMES,
    ICT_EXPRESSION_NAMES,
    NUM_ARKIT,
    NUM_ICT,
    UNSUPPORTED_ARKIT,
    arkit_to_ict,
    ict_to_arkit,
)
from tracker.core.face_model.model import FaceModel, Region

__all__ = [
    "ARKIT_NAMES", "ICT_EXPRESSION_NAMES", "NUM_ARKIT", "NUM_ICT", "UNSUPPORTED_ARKIT", "FaceModel", "Region",
    "arkit_to_ict", "ict_to_arkit",
]  # fmt: skip
