"""``facetrack calibrate camera|board|realsense|neutral``: camera intrinsics, RGB-D alignment, a per-user profile.

Thin wiring of sources and the tracker to :mod:`calibration`: ``camera`` finds a ChArUco board or
checkerboard in the frames of a source and writes the intrinsics file the sources read (``calibration=``);
``realsense`` measures the residual depth -> colour misalignment of a recording; ``neutral`` records a rest
face (and optionally an expression sweep) through the real tracker and writes the profile that
``run/demo --profile`` applies.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path

from tools.options import add_json_option, add_runtime_options, tracker_from_args, write_json

SOURCES_HELP = "webcam:N | video:PATH | images:DIR | synthetic | realsense | realsense:RECORDING"


def _squares(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COLSxROWS squares such as 7x5, got {text!r}") from None
    return x, y


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="camera intrinsics, RealSense depth alignment, per-user neutral face",
                       description=__doc__.split("\n\n")[0])  # fmt: skip
    cal = p.add_subparsers(dest="calibrate_command", metavar="WHAT", required=True)

    c = cal.add_parser("camera", help="intrinsics from a printed ChArUco board or checkerboard",
                       description="Finds the board in the source's frames and solves for fx, fy, cx, cy and "
                       "distortion (OpenCV); writes the calibration JSON that --calibration/sources read.")  # fmt: skip
    c.add_argument("--source", required=True, metavar="SRC", help=SOURCES_HELP)
    c.add_argument("--out", type=Path, required=True, metavar="CAM.json", help="intrinsics file to write")
    _add_board_options(c)
    c.add_argument("--frames", type=int, metavar="N", help="look at most N frames (default: all; 300 for a webcam)")
    c.add_argument("--every", type=int, default=1, metavar="K", help="look at every K-th frame (default 1)")
    c.add_argument("--max-views", type=int, default=40, help="most (distinct) views used (default 40)")
    c.add_argument("--square-pixels", action="store_true", help="assume fx = fy")
    add_json_option(c)
    c.set_defaults(func=cmd_camera)

    b = cal.add_parser("board", help="draw the calibration board to print (PNG)",
                       description="Writes the board `calibrate camera` looks for; print it flat at 100 %% scale "
                       "and measure the printed square to pass as --square-mm.")  # fmt: skip
    b.add_argument("--out", type=Path, required=True, metavar="BOARD.png", help="image to write")
    b.add_argument("--px-per-square", type=int, default=200, help="resolution (default 200 px per square)")
    _add_board_options(b)
    b.set_defaults(func=cmd_board)

    r = cal.add_parser("realsense", help="measure the residual depth->colour misalignment of an RGB-D source",
                       description="Matches the depth image's discontinuities (the face's silhouette) to the "
                       "colour image's edges over shifts of a few pixels; reports the best shift and the "
                       "residual in px.")  # fmt: skip
    r.add_argument("--source", required=True, metavar="SRC", help="realsense:FILE.db3, realsense, or synthetic")
    r.add_argument("--frames", type=int, default=60, metavar="N", help="frames to use (default 60)")
    r.add_argument("--search-px", type=int, default=8, help="largest shift searched, px (default 8)")
    add_json_option(r)
    r.set_defaults(func=cmd_realsense)

    n = cal.add_parser("neutral", help="record a per-user neutral profile (rest face, optional expression sweep)",
                       description="Hold a relaxed, neutral face looking into the camera for --seconds; then, "
                       "with --sweep-seconds, make every expression you want to reach fully (smile, frown, jaw "
                       "open, pucker, brows up and down, blink, sneer). Writes the profile for --profile.")  # fmt: skip
    n.add_argument("--source", required=True, metavar="SRC", help=SOURCES_HELP)
    n.add_argument("--out", type=Path, required=True, metavar="ME.json", help="profile to write")
    n.add_argument("--seconds", type=float, default=3.0, help="rest-face recording, seconds (default 3)")
    n.add_argument("--sweep-seconds", type=float, default=0.0, metavar="N",
                   help="then an expression sweep of N seconds (default 0: rest offsets only)")  # fmt: skip
    n.add_argument("--name", default="", help="whose profile it is (stored in the file)")
    add_runtime_options(n)
    add_json_option(n)
    n.set_defaults(func=cmd_neutral)


def _add_board_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", choices=("charuco", "checkerboard"), default="charuco", help="board kind (default charuco)")
    p.add_argument("--squares", type=_squares, default=(7, 5), metavar="COLSxROWS", help="squares (default 7x5)")
    p.add_argument("--square-mm", type=float, default=30.0, help="printed square side, mm (default 30)")
    p.add_argument("--marker-mm", type=float, default=22.0, help="ChArUco marker side, mm (default 22)")
    p.add_argument("--dictionary", default="DICT_5X5_100", help="ChArUco ArUco dictionary (default DICT_5X5_100)")


def _board_spec(args):
    from calibration.camera import BoardSpec

    return BoardSpec(args.board, args.squares[0], args.squares[1], args.square_mm / 1e3, args.marker_mm / 1e3,
                     args.dictionary)  # fmt: skip


def cmd_board(args) -> int:
    import cv2

    from calibration.camera import board_image
    from tracker.core.errors import ConfigError

    if not 20 <= args.px_per_square <= 2000:
        raise ConfigError(f"--px-per-square must be in 20..2000, got {args.px_per_square}")
    spec = _board_spec(args)
    img = board_image(spec, args.px_per_square, margin_px=args.px_per_square // 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), img):
        raise ConfigError(f"could not write {args.out} (use a .png or .jpg name)")
    print(f"wrote the {spec.squares_x}x{spec.squares_y} {spec.kind} board ({img.shape[1]}x{img.shape[0]} px) to "
          f"{args.out}; print it flat, measure a square and pass --square-mm")  # fmt: skip
    return 0


def _bar(total, desc):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=desc, leave=False)


def cmd_camera(args) -> int:
    from calibration.camera import BoardDetector, calibrate_camera, select_views
    from calibration.intrinsics import save_intrinsics
    from tracker.core.errors import CalibrationError, ConfigError
    from tracker.sources import open_source

    if args.every < 1 or (args.frames is not None and args.frames < 1) or args.max_views < 1:
        raise ConfigError("--every, --frames and --max-views must be >= 1")
    if args.frames is None and args.source.split(":")[0] == "webcam":
        args.frames = 300  # a camera never ends: about 10 s of waving the board
    spec = _board_spec(args)
    detector = BoardDetector(spec)
    views, seen, size = [], 0, None
    with open_source(args.source) as src:
        bar = _bar(args.frames or getattr(src, "expected_frames", None), "finding the board")
        try:
            for i, frame in enumerate(src):
                if args.frames is not None and i >= args.frames:
                    break
                bar.update()
                if i % args.every:
                    continue
                seen += 1
                h, w = frame.color.shape[:2]
                if size not in (None, (w, h)):
                    raise CalibrationError(f"frame {i} is {w}x{h} but earlier frames are {size[0]}x{size[1]}; "
                                           "calibrate one resolution at a time")  # fmt: skip
                size = (w, h)
                view = detector.detect(frame.color, i)
                if view is not None:
                    views.append(view)
        finally:
            bar.close()
    if size is None:
        raise CalibrationError(f"{args.source} delivered no frames")
    if not views:
        raise CalibrationError(f"no {spec.kind} board ({spec.squares_x}x{spec.squares_y} squares) found in any of "
                               f"the {seen} frames; check --board, --squares and --dictionary")  # fmt: skip
    distinct = select_views(views, size, max_views=args.max_views)
    result = calibrate_camera(distinct, size, frames=seen, fix_aspect=args.square_pixels)
    save_intrinsics(result.intrinsics, args.out)
    k = result.intrinsics
    print(f"calibrated {k.width}x{k.height} from {result.views} views ({len(views)} with the board in {seen} "
          f"frames): fx {k.fx:.2f} fy {k.fy:.2f} cx {k.cx:.2f} cy {k.cy:.2f} px, rms {result.rms_px:.3f} px "
          f"-> {args.out}")  # fmt: skip
    write_json(args.json, result.report() | {"out": args.out, "views_found": len(views), "board": dataclasses.asdict(spec)})
    return 0


def cmd_realsense(args) -> int:
    from calibration.realsense_alignment import measure_alignment
    from tracker.core.errors import ConfigError
    from tracker.sources import open_source

    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    options = {"frames": args.frames} if args.source.split(":")[0] == "synthetic" else {}
    with open_source(args.source, **options) as src:
        bar = _bar(args.frames, "measuring alignment")
        try:
            def frames():
                for frame in itertools.islice(src, args.frames):
                    bar.update()
                    yield frame

            report = measure_alignment(frames(), search_px=args.search_px)
        finally:
            bar.close()
    dx, dy = report.shift_px
    verdict = "aligned" if report.aligned else "MISALIGNED"
    print(f"depth->colour {verdict}: depth lies ({dx:+.2f}, {dy:+.2f}) px from colour (+x right, +y down); "
          f"median edge residual {report.residual_px:.2f} px, {report.residual_after_px:.2f} px after the shift "
          f"({report.frames_used} frames, {report.edge_points} depth-edge px)")  # fmt: skip
    write_json(args.json, report.report() | {"source": args.source})
    return 0


def cmd_neutral(args) -> int:
    from calibration.neutral import save_profile
    from tracker.core.errors import ConfigError
    from tracker.sources import open_source

    if not args.seconds > 0 or args.sweep_seconds < 0:
        raise ConfigError(f"--seconds must be > 0 and --sweep-seconds >= 0, got {args.seconds}, {args.sweep_seconds}")
    if args.profile is not None:
        raise ConfigError("calibrate neutral records a new profile; leave out --profile")
    total_s = args.seconds + args.sweep_seconds
    options = {}
    if args.source.split(":")[0] == "synthetic":
        options = {"frames": int(round(total_s * 30.0)) + 1}
    with tracker_from_args(args) as tracker, open_source(args.source, **options) as src:
        profile, recorder = record_neutral(tracker, src, args.seconds, args.sweep_seconds, name=args.name)
    save_profile(profile, args.out)
    print(f"neutral profile from {profile.rest_frames} rest frames and {profile.sweep_frames} sweep frames "
          f"-> {args.out}")  # fmt: skip
    write_json(args.json, profile.to_dict() | {"out": args.out, "frames_seen": recorder.frames_seen})
    return 0


def _track_identity(tracker, track_id):
    """The colour identity a track holds (before any depth scaling), or None."""
    for track in tracker.tracks:
        if track.track_id == track_id and track.identity.value is not None:
            return track.identity.value
    return None


def record_neutral(tracker, source, seconds: float, sweep_seconds: float = 0.0, name: str = "",
                   prompt: bool = True):  # fmt: skip
    """Records a rest face (then a sweep) from a connected ``source`` through ``tracker``; returns the profile.

    Phases are cut by the frames' media time (``Frame.t_media_ns``), so a file or the synthetic source gives
    the same profile however fast the machine is. The tracker averages the identity over the whole rest
    phase (instead of freezing it after about a second), and the profile holds that colour identity.

    Returns:
        (:class:`~calibration.neutral.NeutralProfile`, the :class:`~calibration.neutral.NeutralRecorder`).

    Raises:
        CalibrationError: when the source ends before any frame or no face was tracked.
    """
    from calibration.neutral import NeutralRecorder
    from tracker.core.errors import CalibrationError

    tracker.config = dataclasses.replace(tracker.config, identity_hold_weight=float("inf"))
    tracker.reset()
    recorder = NeutralRecorder()
    identity = None
    total_s = seconds + sweep_seconds
    if prompt:
        print(f"hold a relaxed, neutral face and look into the camera ({seconds:g} s)")
    bar = _bar(None, "rest face")
    t0, phase = None, "rest"
    try:
        for frame in source:
            t0 = frame.t_media_ns if t0 is None else t0
            t_s = (frame.t_media_ns - t0) / 1e9
            if t_s >= total_s:
                break
            if phase == "rest" and t_s >= seconds:
                identity = _track_identity(tracker, recorder.track_id)
                phase = "sweep"
                bar.set_description("expression sweep")
                if prompt:
                    print(f"now make every expression fully: smile, frown, jaw open, pucker, brows up/down, "
                          f"blink, sneer ({sweep_seconds:g} s)")  # fmt: skip
            recorder.add(tracker.process(frame).faces, phase)
            bar.update()
    finally:
        bar.close()
    if identity is None:
        identity = _track_identity(tracker, recorder.track_id)
    if recorder.frames_seen["rest"] == 0:
        raise CalibrationError(f"{source.source_id} delivered no frames")
    if identity is None:
        raise CalibrationError(f"no face was tracked in the {recorder.frames_seen['rest']} rest frames; face the "
                               "camera, well lit")  # fmt: skip
    return recorder.profile(identity, name=name), recorder
