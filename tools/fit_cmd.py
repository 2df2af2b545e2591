"""``facetrack fit image|video|bank|eval|correspondence``: inverse-rendering fits of ICT to real faces."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from tools.options import add_json_option, write_json

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="fit the face model to real images (teacher landmarks + photometric); texture bank")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    v = verbs.add_parser("image", help="fit one image; write an overlay PNG and the fit as JSON")
    v.add_argument("path", type=Path, help="image file")
    v.add_argument("--out", type=Path, default=Path("out/fit"), help="output folder (default out/fit)")
    _fit_options(v)
    add_json_option(v)
    v.set_defaults(func=cmd_image)

    v = verbs.add_parser("video", help="fit frames of a clip with one shared identity; overlay PNGs + JSON")
    v.add_argument("path", type=Path, help="video file")
    v.add_argument("--frames", type=int, default=8, help="frames to fit (default 8)")
    v.add_argument("--stride", type=int, default=5, help="take every STRIDE-th frame (default 5)")
    v.add_argument("--out", type=Path, default=Path("out/fit"), help="output folder (default out/fit)")
    _fit_options(v)
    add_json_option(v)
    v.set_defaults(func=cmd_video)

    v = verbs.add_parser("bank", help="fit many images and unwrap their albedo into a UV texture bank")
    v.add_argument("--images", type=Path, nargs="*", default=[], metavar="DIR", help="image folders or files")
    v.add_argument("--videos", type=Path, nargs="*", default=[], metavar="FILE", help="video files (or folders of them)")
    v.add_argument("--frames-per-video", type=int, default=3, help="frames taken per video, spread evenly (default 3)")
    v.add_argument("--out", type=Path, help="bank folder (default <user cache>/texture_bank; never in git)")
    v.add_argument("--max", type=int, default=0, help="at most N of the --images (0 = all; evenly spread over the list)")
    v.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    v.add_argument("--uv-size", type=int, default=512, help="texture side in texels (default 512)")
    v.add_argument("--max-error-pct", type=float, default=2.0, help="keep fits with teacher error below this %% of face size")
    v.add_argument("--max-yaw", type=float, default=35.0, help="keep faces with |yaw| below this (degrees)")
    add_json_option(v)
    v.set_defaults(func=cmd_bank)

    v = verbs.add_parser("eval", help="fit annotated images (iBUG .pts) and report NME of ICT's 68 landmarks")
    v.add_argument("--images", type=Path, required=True, help="folder of images with .pts beside them")
    v.add_argument("--max", type=int, default=50, help="at most N images, evenly spread (default 50; 0 = all)")
    v.add_argument("--overlays", type=Path, help="write an overlay PNG per image into this folder")
    _fit_options(v)
    add_json_option(v)
    v.set_defaults(func=cmd_eval)

    v = verbs.add_parser("correspondence", help="recompute the MediaPipe<->ICT correspondence file")
    v.add_argument("--out", type=Path, help="output .npz (default: the committed engines/teacher/data file)")
    v.add_argument("--renders", type=int, default=120, help="synthetic renders for the refinement (0 = geometric only)")
    v.add_argument("--seed", type=int, default=0, help="seed of the refinement renders (default 0)")
    add_json_option(v)
    v.set_defaults(func=cmd_correspondence)


def _fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fov", type=float, default=50.0, help="assumed field of view across the longer side (default 50)")
    p.add_argument("--no-photometric", action="store_true", help="landmark term only (faster)")
    p.add_argument("--identity-modes", type=int, default=50, help="identity modes to fit (default 50)")


def _fitter(args):
    from engines.fitting.fit import FitConfig, Fitter

    cfg = FitConfig(num_identity=args.identity_modes, fov_deg=args.fov,
                    photometric_steps=0 if args.no_photometric else FitConfig().photometric_steps)  # fmt: skip
    return Fitter(config=cfg)


def _spread(items: list, n: int) -> list:
    """``n`` items evenly spread over the list (all when n <= 0 or n >= len)."""
    if n <= 0 or n >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    from tracker.core.errors import ConfigError

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"cannot read image {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def cmd_image(args) -> int:
    import cv2

    from engines.fitting.overlay import overlay_image
    from engines.teacher.mediapipe_landmarker import MediaPipeTeacher
    from tracker.core.errors import ConfigError

    image = _read_rgb(args.path)
    fitter = _fitter(args)
    with MediaPipeTeacher() as teacher:
        faces = teacher.detect(image)
    if not faces:
        raise ConfigError(f"{args.path}: the teacher found no face")
    fit = fitter.fit_image(image, faces[0].landmarks_px)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{args.path.stem}_fit.png"
    cv2.imwrite(str(png), overlay_image(fitter, fit, image, faces[0].landmarks_px)[:, :, ::-1])
    summary = {"image": str(args.path), "overlay": str(png), **fit.summary()}
    write_json(args.out / f"{args.path.stem}_fit.json", summary)
    write_json(args.json, summary)
    yaw, pitch, roll = fit.ypr_deg()[0]
    print(f"{args.path.name}: teacher-point error {fit.landmark_error_px[0]:.2f} px, yaw {yaw:.1f} pitch {pitch:.1f} "
          f"roll {roll:.1f} deg, {fit.seconds:.2f} s; overlay {png}")  # fmt: skip
    return 0


def cmd_video(args) -> int:
    import cv2

    from engines.fitting.clip import fit_video
    from engines.fitting.overlay import overlay_image

    fitter = _fitter(args)
    fit, frames, landmarks = fit_video(args.path, fitter, args.frames, args.stride)
    args.out.mkdir(parents=True, exist_ok=True)
    pngs = []
    for i in sorted({0, len(frames) // 2, len(frames) - 1}):
        png = args.out / f"{args.path.stem}_fit_{i:02d}.png"
        cv2.imwrite(str(png), overlay_image(fitter, fit, frames[i], landmarks[i], index=i)[:, :, ::-1])
        pngs.append(str(png))
    summary = {"video": str(args.path), "overlays": pngs, **fit.summary()}
    write_json(args.out / f"{args.path.stem}_fit.json", summary)
    write_json(args.json, summary)
    print(f"{args.path.name}: {fit.batch} frames, mean teacher-point error {fit.landmark_error_px.mean():.2f} px, "
          f"{fit.seconds:.1f} s ({fit.seconds / fit.batch:.2f} s/frame); overlays in {args.out}")  # fmt: skip
    return 0


def cmd_bank(args) -> int:
    from engines.fitting.texture_bank import (
        VIDEO_SUFFIXES,
        BankCriteria,
        build_bank,
        list_images,
        video_frame_sources,
    )
    from tracker.core.errors import ConfigError

    images: list = _spread(list_images(args.images), args.max)
    videos = [p for v in args.videos for p in (sorted(v.rglob("*")) if v.is_dir() else [v]) if p.suffix.lower() in VIDEO_SUFFIXES]
    images += video_frame_sources(videos, args.frames_per_video)
    if not images:
        raise ConfigError("nothing to fit: give --images and/or --videos")
    criteria = BankCriteria(max_landmark_error_pct=args.max_error_pct, max_abs_yaw_deg=args.max_yaw)
    t0 = time.perf_counter()
    summary = build_bank(images, args.out, uv_size=args.uv_size, criteria=criteria, workers=args.workers)
    summary["seconds"] = time.perf_counter() - t0
    write_json(args.json, summary)
    print(f"kept {summary['kept']} of {summary['images']} images in {summary['seconds']:.0f} s; the bank at "
          f"{summary['bank']} now holds {summary['bank_size']} textures")  # fmt: skip
    if summary["rejected"]:
        print("rejected: " + ", ".join(f"{k}: {n}" for k, n in sorted(summary["rejected"].items())))
    return 0


def cmd_eval(args) -> int:
    from engines.teacher.mediapipe_landmarker import MediaPipeTeacher
    from tracker.core.errors import ConfigError
    from tracker.evaluation.fitting import score_images, summarise

    images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                    and p.with_suffix(".pts").exists())  # fmt: skip
    if not images:
        raise ConfigError(f"no images with .pts annotations under {args.images}")
    images = _spread(images, args.max)
    fitter = _fitter(args)
    with MediaPipeTeacher() as teacher:
        scores = score_images(images, fitter, teacher, args.overlays)
    summary = summarise(scores)
    summary["images"] = str(args.images)
    summary["fov_deg"] = args.fov
    summary["photometric"] = not args.no_photometric
    write_json(args.json, {**summary, "per_image": [dataclasses.asdict(s) for s in scores]})
    if "nme" in summary:
        print(f"{summary['n']} images, detected {summary['detected_fraction']:.0%}: NME {summary['nme']:.2f}% "
              f"(median {summary['nme_median']:.2f}%), teacher-point error {summary['teacher_error_px']:.2f} px "
              f"({summary['teacher_error_pct']:.2f}% of face size), fit {summary['fit_seconds']:.2f} s/image")  # fmt: skip
    else:
        print(f"{summary['n']} images, no face detected")
    return 0


def cmd_correspondence(args) -> int:
    from engines.teacher.correspondence import DEFAULT_PATH
    from engines.teacher.refine import build_correspondence
    from tracker.core.face_model import FaceModel
    from tracker.render import Renderer

    corr, report = build_correspondence(FaceModel.load(), Renderer, args.renders, args.seed)
    out = corr.save(args.out or DEFAULT_PATH)
    write_json(args.json, {"path": out, **report})
    geo = report["geometric"]
    print(f"wrote {out}: geometric fit mean residual {geo['mean_residual_cm'] * 10:.2f} mm, scale {geo['scale']:.4f}")
    if "refinement" in report:
        ref = report["refinement"]
        print(f"refined from {ref['renders_used']} renders: mean move {ref['mean_move_cm'] * 10:.2f} mm; MediaPipe vs "
              f"geometric points {ref['old_error_pct']:.2f}% of face size before")  # fmt: skip
    return 0
