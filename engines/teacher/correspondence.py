"""MediaPipe face mesh <-> ICT face model correspondence, computed from the two meshes.

Recipe (``facetrack fit correspondence`` regenerates the committed file):

1. Load MediaPipe's ``canonical_face_model.obj`` (468 vertices, cm, y up, nose +z: the same axes as ICT's
   model frame) and the ICT neutral mesh.
2. Pair a few unambiguous anchor points: eye corners, nose tip, mouth corners, chin. MediaPipe's ids are
   the well-known mesh ids (checked against the canonical mesh's geometry by the tests: mirror pairs,
   nose tip = most forward vertex, chin = lowest vertex); ICT's are its iBUG-68 landmark vertices.
3. Umeyama similarity MediaPipe -> ICT from the anchors.
4. Non-rigid refinement: alternately project the aligned MediaPipe points onto the ICT face surface and
   re-fit the ICT identity coefficients (ridge) and the similarity to them, so the ICT face takes the
   canonical face's proportions and each point lands on the semantically right spot.
5. Final closest-point projection onto the (identity-deformed) ICT face triangles: a triangle id and
   barycentric weights per MediaPipe point. These live on the ICT topology, so they hold for any ICT
   identity and expression.
6. (:mod:`engines.teacher.refine`) Refinement from synthetic renders: where MediaPipe actually puts each
   point on rendered ICT faces of known geometry. The committed file is the refined one.

MediaPipe's 10 iris points (468-477) have no counterpart: ICT's eyeballs do not move with its expressions.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from engines.teacher.registration import Similarity, closest_points_on_triangles, umeyama
from tracker.core.assets import require
from tracker.core.errors import AssetError, ConfigError
from tracker.core.face_model import FaceModel

log = logging.getLogger(__name__)

NUM_MP_MESH = 468
DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "mediapipe_to_ict.npz"
FORMAT_VERSION = 1

#: Anchor pairs: name -> (MediaPipe canonical vertex id, iBUG-68 index of the ICT landmark). "Right" is the
#: subject's right (x < 0 in both model frames).
ANCHORS: dict[str, tuple[int, int]] = {
    "right_eye_outer": (33, 36),
    "right_eye_inner": (133, 39),
    "left_eye_inner": (362, 42),
    "left_eye_outer": (263, 45),
    "nose_tip": (4, 30),
    "mouth_right": (61, 48),
    "mouth_left": (291, 54),
    "chin": (152, 8),
}


@dataclasses.dataclass(frozen=True)
class Correspondence:
    """Where each of MediaPipe's 468 mesh points lies on the ICT face surface.

    Attributes:
        triangle_ids: (468,) int32 ids into ``FaceModel.triangles`` (all within the ``face`` region).
        triangle_vertices: (468,3) int32 ICT vertex ids of those triangles.
        bary: (468,3) float32 barycentric weights (rows sum to 1).
        residual_cm: (468,) float32 distance from each aligned MediaPipe vertex to its ICT surface point.
        weights: (468,) float32 suggested per-point weights for a landmark term (1, lower where the
            residual is large, 0 for points that do not transfer).
        similarity_scale: Scale of the final MediaPipe -> ICT similarity.
        num_identity: Identity modes used by the non-rigid refinement.
    """

    triangle_ids: np.ndarray
    triangle_vertices: np.ndarray
    bary: np.ndarray
    residual_cm: np.ndarray
    weights: np.ndarray
    similarity_scale: float = 1.0
    num_identity: int = 0

    def __post_init__(self) -> None:
        for name, shape in (
            ("triangle_ids", (NUM_MP_MESH,)),
            ("triangle_vertices", (NUM_MP_MESH, 3)),
            ("bary", (NUM_MP_MESH, 3)),
            ("residual_cm", (NUM_MP_MESH,)),
            ("weights", (NUM_MP_MESH,)),
        ):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.shape != shape:
                raise ConfigError(f"Correspondence.{name}: expected {shape}, got {getattr(arr, 'shape', type(arr))}")

    def points_cm(self, vertices_cm: np.ndarray) -> np.ndarray:
        """(468,3) surface points of a full-model (V,3) vertex array (e.g. ``FaceModel.vertices()``)."""
        v = np.asarray(vertices_cm)
        return (v[self.triangle_vertices] * self.bary[..., None]).sum(1)

    def save(self, path: Path = DEFAULT_PATH) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            format_version=np.int32(FORMAT_VERSION),
            triangle_ids=self.triangle_ids.astype(np.int32),
            triangle_vertices=self.triangle_vertices.astype(np.int32),
            bary=self.bary.astype(np.float32),
            residual_cm=self.residual_cm.astype(np.float32),
            weights=self.weights.astype(np.float32),
            similarity_scale=np.float32(self.similarity_scale),
            num_identity=np.int32(self.num_identity),
        )
        return path


def load_correspondence(path: Path | None = None) -> Correspondence:
    """Loads the committed correspondence (``engines/teacher/data/mediapipe_to_ict.npz`` by default).

    Raises:
        AssetError: if the file is missing, unreadable or of another format version.
    """
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format_version"]) != FORMAT_VERSION:
                raise AssetError(f"{path}: correspondence format {int(z['format_version'])}, expected {FORMAT_VERSION}")
            return Correspondence(
                triangle_ids=z["triangle_ids"],
                triangle_vertices=z["triangle_vertices"],
                bary=z["bary"],
                residual_cm=z["residual_cm"],
                weights=z["weights"],
                similarity_scale=float(z["similarity_scale"]),
                num_identity=int(z["num_identity"]),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise AssetError(f"cannot read the MediaPipe<->ICT correspondence {path}: {exc}; "
                         "regenerate it with `facetrack fit correspondence`") from exc  # fmt: skip


def load_canonical_mesh(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's canonical face: (468,3) float64 vertices in cm (y up, nose +z) and (F,3) int64 triangles."""
    path = Path(path) if path is not None else require("mediapipe-canonical-mesh")
    verts, faces = [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            verts.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("f "):
            faces.append([int(c.split("/")[0]) - 1 for c in line.split()[1:]])
    v, f = np.array(verts), np.array(faces, dtype=np.int64)
    if v.shape != (NUM_MP_MESH, 3):
        raise AssetError(f"{path}: expected {NUM_MP_MESH} vertices, got {v.shape[0]}")
    return v, f


def mirror_permutation(path: Path | None = None, max_error_cm: float = 0.05) -> np.ndarray:
    """(468,) int64: the id of each MediaPipe mesh point's left/right mirror image (points on the midline map
    to themselves), from the symmetry of the canonical mesh.

    A face image mirrored left-right has its point ``i`` where the original had point ``perm[i]``; training
    uses this to flip teacher-labelled crops.

    Raises:
        AssetError: if the canonical mesh is not mirror-symmetric to ``max_error_cm``.
    """
    v, _ = load_canonical_mesh(path)
    mirrored = v * np.array([-1.0, 1.0, 1.0])
    d = np.linalg.norm(v[None, :, :] - mirrored[:, None, :], axis=-1)  # (i, j): |v_j - mirror(v_i)|
    perm = d.argmin(axis=1)
    err = d[np.arange(len(v)), perm]
    if err.max() > max_error_cm or not np.array_equal(perm[perm], np.arange(len(v))):
        raise AssetError(f"MediaPipe's canonical mesh is not mirror-symmetric (max error {err.max():.3f} cm)")
    return perm.astype(np.int64)


def compute_correspondence(
    model: FaceModel,
    canonical_path: Path | None = None,
    num_identity: int = 40,
    iterations: int = 6,
    identity_ridge: float = 1.0,
    region: str = "face",
) -> tuple[Correspondence, dict]:
    """Computes the correspondence (see the module docstring for the recipe).

    Args:
        model: The ICT model.
        canonical_path: MediaPipe's ``canonical_face_model.obj``; default: the registered asset.
        num_identity: ICT identity modes the non-rigid step may use (0 = rigid only).
        iterations: Non-rigid refinement rounds.
        identity_ridge: Ridge weight on the identity coefficients (prior ~N(0,1)), in cm^2 per coefficient.
        region: ICT region whose triangles the points may land on.

    Returns:
        The :class:`Correspondence` and a report dict (anchor distances, residuals, identity coefficients).
    """
    mp_v, _ = load_canonical_mesh(canonical_path)
    r = model.region(region)
    # Work in the region's local vertex numbering (region vertices are a contiguous range).
    tris = model.triangles_of(region).astype(np.int64)
    mp_ids = np.array([a for a, _ in ANCHORS.values()])
    ict_ids = model.landmark_ids[np.array([b for _, b in ANCHORS.values()])] - r.v0
    if ict_ids.min() < 0 or ict_ids.max() >= r.v1 - r.v0:
        raise ConfigError(f"region {region!r} does not contain the ICT anchor landmarks")

    neutral = model.neutral_cm[r.v0 : r.v1].astype(np.float64)
    basis = model.identity_basis_cm[:num_identity, r.v0 * 3 : r.v1 * 3].astype(np.float64)
    basis = basis.reshape(num_identity, r.v1 - r.v0, 3)
    alpha = np.zeros(num_identity)
    ict_v = neutral.copy()
    sim = umeyama(mp_v[mp_ids], ict_v[ict_ids])
    rigid_anchor_err = np.linalg.norm(sim.apply(mp_v[mp_ids]) - ict_v[ict_ids], axis=1)
    history = []
    for it in range(iterations + 1):
        aligned = sim.apply(mp_v)
        tri, bary, dist = closest_points_on_triangles(aligned, ict_v, tris)
        history.append(float(dist.mean()))
        log.debug("round %d: mean residual %.3f cm, scale %.4f", it, dist.mean(), sim.scale)
        if it == iterations or num_identity == 0:
            break
        # Each MediaPipe point sits at a fixed spot of ICT's topology: its closest surface point, except the
        # anchors, which are pinned to their ICT landmark vertices.
        corners, weights_b = tris[tri], bary.copy()
        corners[mp_ids] = ict_ids[:, None]
        weights_b[mp_ids] = (1.0, 0.0, 0.0)
        # Surface point = sum_k w_k (neutral + B alpha)[corner_k] is linear in alpha: ridge least squares,
        # with the anchors weighted up so the semantic pins hold while the rest follows the surface.
        w_pts = np.ones(NUM_MP_MESH)
        w_pts[mp_ids] = 10.0
        base = (neutral[corners] * weights_b[..., None]).sum(1)  # (N,3)
        a_mat = (basis[:, corners] * weights_b[None, ..., None]).sum(2)  # (K,N,3)
        a_mat = (a_mat * np.sqrt(w_pts)[None, :, None]).reshape(num_identity, -1).T
        rhs = ((aligned - base) * np.sqrt(w_pts)[:, None]).ravel()
        alpha = np.linalg.solve(a_mat.T @ a_mat + identity_ridge * np.eye(num_identity), a_mat.T @ rhs)
        ict_v = neutral + np.tensordot(alpha, basis, axes=1)
        surf = (ict_v[corners] * weights_b[..., None]).sum(1)
        sim = _weighted_umeyama(mp_v, surf, w_pts)

    aligned = sim.apply(mp_v)
    tri, bary, dist = closest_points_on_triangles(aligned, ict_v, tris)
    anchor_err = {
        name: float(np.linalg.norm((ict_v[tris[tri[m]]] * bary[m][:, None]).sum(0) - ict_v[ict_ids[i]]))
        for i, (name, (m, _)) in enumerate(ANCHORS.items())
    }
    # Points far from the surface (beyond ICT's face boundary) transfer badly: weight them down smoothly.
    weights = np.clip(1.0 - (dist - 0.3) / 0.7, 0.0, 1.0).astype(np.float32)
    corr = Correspondence(
        triangle_ids=(tri + r.t0).astype(np.int32),
        triangle_vertices=(tris[tri] + r.v0).astype(np.int32),
        bary=bary.astype(np.float32),
        residual_cm=dist.astype(np.float32),
        weights=weights,
        similarity_scale=float(sim.scale),
        num_identity=int(num_identity),
    )
    report = {
        "rigid_anchor_error_cm": rigid_anchor_err.tolist(),
        "anchor_error_cm": anchor_err,
        "mean_residual_cm": float(dist.mean()),
        "max_residual_cm": float(dist.max()),
        "residual_history_cm": history,
        "scale": float(sim.scale),
        "identity": alpha.tolist(),
    }
    return corr, report


def _weighted_umeyama(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> Similarity:
    # Repeating points by integer weight would be wasteful; a weighted Umeyama is the same algebra.
    w = weights / weights.sum()
    mx, my = (w[:, None] * source).sum(0), (w[:, None] * target).sum(0)
    xc, yc = source - mx, target - my
    cov = (yc * w[:, None]).T @ xc
    u, d, vt = np.linalg.svd(cov)
    s = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2] = -1.0
    rot = u @ np.diag(s) @ vt
    scale = float((d * s).sum() / (w * (xc**2).sum(1)).sum())
    return Similarity(scale, rot, my - scale * rot @ mx)
