"""Reference images for checking the renderer by eye (orientation, eyes, teeth, lighting, overlay)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engines.train.background import procedural_background
from tracker.core.face_model.albedo import procedural_albedo
from tracker.core.face_model.arkit import ICT_EXPRESSION_NAMES
from tracker.core.face_model.sh import sh_ambient, sh_directional
from tracker.core.geometry import rotation_from_ypr_deg
from tracker.core.types import FaceCoefficients, Intrinsics
from tracker.render.renderer import Renderer
from tracker.sources.performance import performance_frame

_LIGHT = sh_ambient((0.5, 0.5, 0.5)) + sh_directional((0.4, -0.5, -1.0), (0.6, 0.6, 0.6))


def _expr(**values: float) -> np.ndarray:
    e = np.zeros(len(ICT_EXPRESSION_NAMES), np.float32)
    for k, v in values.items():
        e[ICT_EXPRESSION_NAMES.index(k)] = v
    return e


def write_gallery(out_dir: Path, renderer: Renderer | None = None, seed: int = 3) -> list[Path]:
    """Writes PNGs: frontal, turned 45°, jaw open + smile, wireframe and shaded overlays, depth and mask,
    and a contact sheet of the synthetic performance with its 68 ground-truth landmarks.

    Returns:
        The written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    own = renderer is None
    r = renderer if renderer is not None else Renderer()
    paths: list[Path] = []

    def save(name: str, rgb: np.ndarray) -> None:
        path = out_dir / f"{name}.png"
        cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
        paths.append(path)

    try:
        k = Intrinsics.from_fov(640, 480, 60.0)
        albedo = procedural_albedo(r.model, seed)
        bg = procedural_background(seed, 640, 480)
        ident = np.random.default_rng(seed).normal(0, 0.8, 40).astype(np.float32)
        shots = {
            "frontal": ((0, 0, 0), _expr()),
            "turned_45": ((45, 0, 0), _expr()),
            "jaw_open_smile": ((15, 10, 0), _expr(jawOpen=0.6, mouthSmile_L=0.9, mouthSmile_R=0.9)),
        }
        t = np.array([0.0, 0.0, 0.45])
        for name, (ypr, e) in shots.items():
            p = FaceCoefficients(ident, e, rotation_from_ypr_deg(*ypr), t, _LIGHT)
            out = r.render(p, k, albedo, bg)
            save(name, out.rgb)
            if name == "turned_45":
                d = out.depth_m
                vis = np.zeros_like(d)
                if (d > 0).any():
                    lo, hi = d[d > 0].min(), d[d > 0].max()
                    vis[d > 0] = 1 - (d[d > 0] - lo) / max(hi - lo, 1e-6) * 0.8
                save("turned_45_depth", np.repeat((vis * 255).astype(np.uint8)[..., None], 3, axis=2))
                save("turned_45_mask", np.repeat((out.mask * 255).astype(np.uint8)[..., None], 3, axis=2))
        p = FaceCoefficients(ident, _expr(mouthSmile_L=0.5), rotation_from_ypr_deg(-20, 5, 5), t, _LIGHT)
        frame = r.render(p, k, albedo, bg).rgb
        save("overlay_wireframe", r.overlay(frame, p, k, mode="wireframe", opacity=0.7))
        save("overlay_shaded", r.overlay(frame, p, k, mode="shaded", opacity=0.5, color=(120, 180, 255)))
        # The synthetic performance (every 26th frame of the first cycle) with its landmarks.
        tiles = []
        for i in range(0, 390, 39):
            p = performance_frame(seed, i)
            img = r.render(p, k, albedo, bg).rgb.copy()
            lm = p.rotation @ r.model.landmarks68(p.identity, p.expression).astype(np.float64).T
            px = k.project(lm.T + p.translation_m)
            for u, v in np.rint(px).astype(int):
                cv2.circle(img, (int(u), int(v)), 2, (0, 255, 0), -1)
            cv2.putText(img, f"frame {i}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 0), 2)
            tiles.append(cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA))
        sheet = np.vstack([np.hstack(tiles[:5]), np.hstack(tiles[5:10])])
        save("performance_sheet", sheet)
    finally:
        if own:
            r.close()
    return paths
