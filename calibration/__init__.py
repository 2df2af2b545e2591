"""Calibration: camera intrinsics (:mod:`calibration.intrinsics` files, :mod:`calibration.camera` from a board),
the RGB-D depth -> colour alignment check (:mod:`calibration.realsense_alignment`) and the per-user neutral
profile (:mod:`calibration.neutral`). Imports only ``tracker.core`` of the project (ARCHITECTURE §1)."""
