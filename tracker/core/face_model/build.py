"""Converts the upstream ICT-FaceKit ``FaceXModel`` folder (or an archive of it) into a compact cache.

The upstream model is 158 OBJ files of ~2.5 MB each (text, centimetres). The cache is one uncompressed
``.npz`` of float32 arrays that loads in tens of milliseconds: the neutral mesh, identity and expression
bases as deltas from the neutral, triangles (quads split in two), UVs, region ranges, the 68 landmark
vertex ids, expression names and the source's content hash.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from tracker.core.assets import cache_dir, content_sha256, get_asset, iter_folder_files, require
from tracker.core.errors import AssetError
from tracker.core.face_model.arkit import ICT_EXPRESSION_NAMES

log = logging.getLogger(__name__)

#: Bump when the cache layout changes; a cache of another version is rebuilt.
CACHE_FORMAT_VERSION = 1
NUM_VERTICES = 26719
NUM_IDENTITIES = 100

#: Upstream geometry table (UPSTREAM_README.md): name -> (first vertex, last vertex, first polygon, last polygon).
GEOMETRIES: dict[str, tuple[int, int, int, int]] = {
    "face": (0, 9408, 0, 9229),
    "head_and_neck": (9409, 11247, 9230, 11143),
    "mouth_socket": (11248, 13293, 11144, 13225),
    "eye_socket_left": (13294, 13677, 13226, 13629),
    "eye_socket_right": (13678, 14061, 13630, 14033),
    "gums_and_tongue": (14062, 17038, 14034, 17005),
    "teeth": (17039, 21450, 17006, 21495),
    "eyeball_left": (21451, 23020, 21496, 23093),
    "eyeball_right": (23021, 24590, 23094, 24691),
    "lacrimal_fluid_left": (24591, 24794, 24692, 24854),
    "lacrimal_fluid_right": (24795, 24998, 24855, 25017),
    "eye_blend_left": (24999, 25022, 25018, 25032),
    "eye_blend_right": (25023, 25046, 25033, 25047),
    "eye_occlusion_left": (25047, 25198, 25048, 25175),
    "eye_occlusion_right": (25199, 25350, 25176, 25303),
    "eyelashes_left": (25351, 26034, 25304, 25843),
    "eyelashes_right": (26035, 26718, 25844, 26383),
}
#: Regions the FaceModel API exposes: name -> (vertex count from 0, polygon count from 0).
REGIONS: dict[str, tuple[int, int]] = {"full": (26719, 26384), "face": (9409, 9230), "narrow_face": (6706, 6560)}


def default_cache_path() -> Path:
    """Where ``facetrack assets build`` writes the model cache."""
    return cache_dir() / "models" / f"ict_face_model_v{CACHE_FORMAT_VERSION}.npz"


def parse_obj_vertices(data: bytes) -> np.ndarray:
    """(V,3) float64 ``v`` positions of an OBJ file's bytes."""
    lines = [ln[2:] for ln in data.split(b"\n") if ln.startswith(b"v ")]
    values = np.array(b" ".join(lines).split(), dtype=np.float64)
    if values.size % 3:
        raise AssetError("OBJ has a vertex line without exactly 3 coordinates")
    return values.reshape(-1, 3)


def parse_obj_topology(data: bytes) -> dict[str, np.ndarray]:
    """Faces, UVs and material groups of an OBJ.

    Returns:
        dict with ``uv`` (T,2) float32, ``polygons`` list of (v ids, vt ids) per polygon (0-based) as two
        ragged lists, and ``materials`` [(name, first polygon)].
    """
    uvs, poly_v, poly_t, materials = [], [], [], []
    for ln in data.split(b"\n"):
        if ln.startswith(b"vt "):
            uvs.append(ln[3:].split()[:2])
        elif ln.startswith(b"f "):
            corners = [c.split(b"/") for c in ln[2:].split()]
            poly_v.append([int(c[0]) - 1 for c in corners])
            poly_t.append([int(c[1]) - 1 for c in corners])
        elif ln.startswith(b"usemtl "):
            materials.append((ln[7:].strip().decode(), len(poly_v)))
    return {
        "uv": np.array(uvs, dtype=np.float32),
        "poly_v": poly_v,
        "poly_t": poly_t,
        "materials": materials,
    }


def _triangulate(poly_v: list[list[int]], poly_t: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits quads (a,b,c,d) into (a,b,c) and (a,c,d).

    Returns:
        triangles (F,3) int32, triangle UV ids (F,3) int32, and (P+1,) int64 offsets: polygon p became
        triangles [offsets[p], offsets[p+1]).
    """
    tris, tuv, offsets = [], [], [0]
    for pv, pt in zip(poly_v, poly_t, strict=True):
        if len(pv) not in (3, 4):
            raise AssetError(f"OBJ polygon with {len(pv)} corners; only triangles and quads are expected")
        tris.append(pv[:3])
        tuv.append(pt[:3])
        if len(pv) == 4:
            tris.append([pv[0], pv[2], pv[3]])
            tuv.append([pt[0], pt[2], pt[3]])
        offsets.append(len(tris))
    return np.array(tris, np.int32), np.array(tuv, np.int32), np.array(offsets, np.int64)


def _uv_split_mesh(triangles: np.ndarray, triangle_uv: np.ndarray, uv: np.ndarray):
    """A mesh whose vertices are the unique (position, uv) pairs, as a GPU needs for UV texturing."""
    pairs = np.stack([triangles.ravel(), triangle_uv.ravel()], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return unique[:, 0].astype(np.int32), uv[unique[:, 1]], inverse.reshape(-1, 3).astype(np.int32)


def build_cache(source: Path | None = None, out: Path | None = None, progress: bool = True) -> Path:
    """Builds the model cache from the upstream folder or an archive of it.

    Args:
        source: ``FaceXModel`` folder, or a ``.tar.xz``/``.zip`` holding it. Default: the registered asset.
        out: Output ``.npz``. Default: :func:`default_cache_path`.
        progress: Show a progress bar.

    Returns:
        The path of the written cache.

    Raises:
        AssetError: if the source is missing, corrupt, or not the ICT model this code expects.
    """
    from tqdm import tqdm

    asset = get_asset("ict-facekit")
    source = Path(source) if source is not None else require("ict-facekit", verify=False)
    out = Path(out) if out is not None else default_cache_path()
    t0 = time.perf_counter()
    files = dict(iter_folder_files(source, asset.folder))
    source_hash = content_sha256(files.items())
    if source_hash != asset.sha256:
        log.warning("ICT model content hash %s differs from the registered %s", source_hash, asset.sha256)

    try:
        meta = json.loads(files["vertex_indices.json"])
        neutral_bytes = files["generic_neutral_mesh.obj"]
    except KeyError as exc:
        raise AssetError(f"{source}: the ICT model folder lacks {exc}") from exc
    names = tuple(meta["expressions"])
    if names != ICT_EXPRESSION_NAMES:
        raise AssetError(f"{source}: unexpected expression list in vertex_indices.json: {names[:5]}...")

    neutral = parse_obj_vertices(neutral_bytes)
    topo = parse_obj_topology(neutral_bytes)
    if neutral.shape != (NUM_VERTICES, 3) or len(topo["poly_v"]) != REGIONS["full"][1]:
        raise AssetError(f"{source}: neutral mesh has {neutral.shape[0]} vertices / {len(topo['poly_v'])} polygons")
    triangles, triangle_uv, offsets = _triangulate(topo["poly_v"], topo["poly_t"])

    shape_files = [f"identity{i:03d}.obj" for i in range(NUM_IDENTITIES)] + [f"{n}.obj" for n in names]
    deltas = np.empty((len(shape_files), NUM_VERTICES * 3), dtype=np.float32)
    for k, fname in enumerate(tqdm(shape_files, desc="ICT shapes", disable=not progress)):
        if fname not in files:
            raise AssetError(f"{source}: the ICT model folder lacks {fname}")
        v = parse_obj_vertices(files[fname])
        if v.shape != neutral.shape:
            raise AssetError(f"{source}/{fname}: {v.shape[0]} vertices, expected {NUM_VERTICES}")
        deltas[k] = (v - neutral).ravel()

    uv_vertex, uv_coords, uv_triangles = _uv_split_mesh(triangles, triangle_uv, topo["uv"])
    region_names = list(REGIONS) + list(GEOMETRIES)
    region_ranges = []  # (first vertex, end vertex, first triangle, end triangle)
    for r in region_names:
        if r in REGIONS:
            nv, npoly = REGIONS[r]
            region_ranges.append((0, nv, 0, int(offsets[npoly])))
        else:
            v0, v1, p0, p1 = GEOMETRIES[r]
            region_ranges.append((v0, v1 + 1, int(offsets[p0]), int(offsets[p1 + 1])))
    materials = topo["materials"]
    material_ranges = [
        (int(offsets[start]), int(offsets[materials[i + 1][1] if i + 1 < len(materials) else len(topo["poly_v"])]))
        for i, (_, start) in enumerate(materials)
    ]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.npz")
    np.savez(
        tmp,
        format_version=np.int32(CACHE_FORMAT_VERSION),
        source_sha256=np.array(source_hash),
        neutral_cm=neutral.astype(np.float32),
        identity_basis_cm=deltas[:NUM_IDENTITIES],
        expression_basis_cm=deltas[NUM_IDENTITIES:],
        expression_names=np.array(names),
        triangles=triangles,
        triangle_uv=triangle_uv,
        uv=topo["uv"],
        uv_vertex=uv_vertex,
        uv_coords=uv_coords,
        uv_triangles=uv_triangles,
        landmarks68=np.array(meta["idx_to_landmark_verts"], dtype=np.int32),
        region_names=np.array(region_names),
        region_ranges=np.array(region_ranges, dtype=np.int64),
        material_names=np.array([m for m, _ in materials]),
        material_ranges=np.array(material_ranges, dtype=np.int64),
    )
    tmp.replace(out)  # atomic: a reader never sees a half-written cache
    log.info("built %s in %.1f s (%.1f MB)", out, time.perf_counter() - t0, out.stat().st_size / 1e6)
    return out

