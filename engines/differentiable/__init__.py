"""Differentiable face-model layer in torch (training and fitting only; ``import tracker`` never imports it).

Pieces: :class:`FaceLayer` / :class:`SurfacePoints` (ICT vertices in head-frame metres), rigid transform and
pinhole projection (:mod:`.camera`), rotation parametrisations (:mod:`.rotation`), vertex normals and SH
shading (:mod:`.shading`), bilinear vertex sampling and visibility (:mod:`.sampling`).
"""

from engines.differentiable.camera import (
    head_to_camera,
    intrinsics_tensor,
    project,
)
from engines.differentiable.face_layer import FaceLayer, SurfacePoints, interpolate
from engines.differentiable.rotation import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_sixd,
    matrix_to_ypr_deg,
    rotation_angle_deg,
    sixd_to_matrix,
    ypr_deg_to_matrix,
)
from engines.differentiable.sampling import facing_camera, image_to_tensor, inside_image, sample_image
from engines.differentiable.shading import NUM_SH, ambient_sh, sh_basis, sh_irradiance, shade, vertex_normals

__all__ = [
    "NUM_SH", "FaceLayer", "SurfacePoints", "ambient_sh",
    "axis_angle_to_matrix", "facing_camera", "head_to_camera", "image_to_tensor", "inside_image", "interpolate",
    "intrinsics_tensor", "matrix_to_axis_angle", "matrix_to_quaternion", "matrix_to_sixd", "matrix_to_ypr_deg",
    "project", "rotation_angle_deg", "sample_image", "sh_basis", "sh_irradiance", "shade", "sixd_to_matrix",
    "vertex_normals", "ypr_deg_to_matrix",
]  # fmt: skip
