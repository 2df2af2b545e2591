"""The synchronous tracker: ``process(frame) -> TrackResult`` (ARCHITECTURE §6 "Tracking at run time").

Per frame:

1. **Detect** (YuNet) when there is no track, when a track was lost, and every ``detect_every_n_frames``
   to pick up new faces. Detections that overlap an existing track are that track; the rest start new
   tracks (up to ``max_faces``).
2. **Crop** every other face from its previous landmarks, shifted by the median pyramidal Lucas-Kanade
   flow of those landmarks when ``use_optical_flow`` is on (fast motion would otherwise leave the face
   off-centre in the crop).
3. **Regress** all crops in one batch.
4. **Hold identity** per track (confidence-weighted mean, then frozen); on frames with aligned depth,
   **scale the head** to the depth image (:mod:`tracker.tracking.depth_scale`: colour alone leaves the head's size,
   and so its distance, a few percent uncertain) and take its **pose from CoarseNet-D**, the learned rigid
   alignment on colour and depth (:mod:`tracker.tracking.depth_align`); **filter** pose and expressions with One Euro filters
   (causal, no look-ahead).
5. A track whose confidence stays below ``min_confidence`` for more than ``max_misses`` frames is
   reported once with state ``"lost"`` and dropped; two tracks that collapse onto one face keep the
   more confident one, so crossing faces cannot swap or duplicate.

The threaded :class:`~tracker.pipeline.Pipeline` runs the same steps split across threads.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import cv2
import numpy as np

from calibration.neutral import NeutralProfile
from tracker.core.boxes import iou, points_box
from tracker.core.crop import POSE_ANCHOR_HEAD_M, CropBox, PerspectiveCrop
from tracker.core.errors import ConfigError
from tracker.core.types import Detections, FaceCoefficients, FaceState, Frame, TrackResult
from tracker.tracking.depth_icp import DepthIcp
from tracker.tracking.depth_scale import INNER_LANDMARKS, HeadScaler, depth_scale
from tracker.tracking.filters import FaceFilterParams
from tracker.tracking.regressor import Regression, Regressor
from tracker.tracking.track import Track

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    """Tracker behaviour.

    Attributes:
        detect_every_n_frames: Run the detector at least this often to find new faces.
        max_faces: Most faces tracked at once.
        min_confidence: Regressor confidence below which a frame counts as a miss.
        max_misses: Consecutive misses after which a track is lost.
        use_optical_flow: Shift crops by the landmarks' optical flow.
        filter: One Euro tuning; None turns temporal filtering off.
        identity_hold_weight: Confidence mass after which a track's identity (and head scale) is frozen.
        use_depth: On frames that carry aligned depth (RGB-D sources), scale each head to the depth image;
            off: colour alone.
        duplicate_iou: Two tracks whose landmark boxes overlap more than this are one face.
        match_iou: A detection overlapping a track's box by more than this belongs to it.
    """

    detect_every_n_frames: int = 30
    max_faces: int = 4
    min_confidence: float = 0.5
    max_misses: int = 2
    use_optical_flow: bool = True
    filter: FaceFilterParams | None = dataclasses.field(default_factory=FaceFilterParams)
    identity_hold_weight: float = 30.0
    use_depth: bool = True
    duplicate_iou: float = 0.5
    match_iou: float = 0.3
    #: A per-user :class:`calibration.neutral.NeutralProfile`: every track starts with its identity held, and
    #: the published expressions are mapped so the person's rest face reads 0 (``--profile``).
    profile: NeutralProfile | None = dataclasses.field(default=None, compare=False)
    #: After the depth scale, refine each head's pose by point-to-plane ICP against the depth (``--depth icp``,
    #: a baseline for comparison, :mod:`tracker.tracking.depth_icp`).
    depth_icp: bool = False
    #: With ``use_depth``, take each head's pose from CoarseNet-D (``--depth auto``, the learned rigid alignment of
    #: :mod:`tracker.tracking.depth_align`) where the regressor runs it; off: the depth scale alone (``scale``).
    depth_align: bool = True

    def __post_init__(self) -> None:
        if self.detect_every_n_frames < 1 or self.max_faces < 1 or self.max_misses < 0:
            raise ConfigError(f"invalid tracker config {self}")


_LK_PARAMS = dict(winSize=(15, 15), maxLevel=2, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.05))
#: Optical flow runs on the grey image at half resolution: it only re-centres the next crop (the network
#: then finds the face precisely), and half resolution halves its cost.
_FLOW_SCALE = 0.5
#: The landmarks whose flow is followed: every other inner point (brows, nose, eyes, mouth), 26 of 68. They
#: sit on texture; the jaw contour lies on the face's edge, where the flow mixes in the background. The
#: track moves by their median flow, so fewer points cost less (LK's time grows with the point count).
_FLOW_POINTS = np.arange(17, 68, 2)


@dataclasses.dataclass
class TrackPlan:
    """What :meth:`Tracker.prepare` decided for one frame, waiting for its regressions.

    Attributes:
        frame: The frame.
        jobs: (track, crop box, is a new detection) per face to regress.
        crops: One perspective crop per job, in order: what goes to the regressor.
        gray: The frame's half-resolution grey image (the next frame's optical flow), or None without flow.
        timings: Stage times so far (ms), keyed like ``TrackResult.timings_ms``.
        t_start: ``time.perf_counter()`` when the frame's tracking started (s).
    """

    frame: Frame
    jobs: list[tuple[Track, CropBox, bool]]
    crops: list[PerspectiveCrop]
    gray: np.ndarray | None
    timings: dict[str, float]
    t_start: float


class Tracker:
    """See the module docstring.

    Args:
        detector: Anything with ``detect(rgb) -> Detections`` (e.g. :class:`~tracker.detection.yunet.YuNetDetector`).
        regressor: The CoarseNet :class:`~tracker.tracking.regressor.Regressor`.
        config: Behaviour; defaults suit one to four faces at 30 fps.
    """

    def __init__(self, detector, regressor: Regressor, config: TrackerConfig | None = None) -> None:
        self.detector = detector
        self.regressor = regressor
        self.config = config or TrackerConfig()
        self._tracks: list[Track] = []
        self._next_id = 1
        self._last_detect_frame: int | None = None
        self._lost_since_detect = False
        self._prev_gray: np.ndarray | None = None
        self._scaler: HeadScaler | None = None  # built on the first frame with depth
        self._icp: DepthIcp | None = None  # built on the first frame with depth when config.depth_icp
        self._last_source: str | None = None  # the stream the tracks belong to
        self._warm = False  # both networks set up and run once (warmup)
        self._last_t_media_ns = -1
        self._owns_engines = True  # False for a sibling(): the tracker it came from closes the engines

    def sibling(self) -> Tracker:
        """A tracker with its own tracks, ids, identity holds, filters and flow state over this tracker's
        detector and regressor: one per camera, with the networks loaded once. Its :meth:`close` leaves
        the shared engines to this tracker."""
        twin = Tracker(self.detector, self.regressor, self.config)
        twin._owns_engines = False
        twin._warm = self._warm
        return twin

    @property
    def tracks(self) -> list[Track]:
        return list(self._tracks)

    def close(self) -> None:
        """Releases the detector's and regressor's engines (a later :meth:`warmup` sets them up again)."""
        self._warm = False
        if not self._owns_engines:
            return
        for part in (self.detector, self.regressor):
            close = getattr(part, "close", None)
            if close is not None:
                close()

    def warmup(self, frame_wh: tuple[int, int] = (640, 480)) -> None:
        """Sets up both networks now (engine activation, a first TensorRT build, kernel selection) by running
        each once on zeros (a blank frame, one blank crop), so the first frame is not the slow one. Once per
        activation: ``create_tracker`` warms up and ``Pipeline.start`` asks again; the second call is free."""
        if self._warm:
            return
        self.detector.detect(np.zeros((frame_wh[1], frame_wh[0], 3), np.uint8))
        self.regressor.warmup()
        self._warm = True

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def reset(self) -> None:
        self._tracks.clear()
        self._last_detect_frame = None
        self._lost_since_detect = False
        self._prev_gray = None

    # ------------------------------------------------------------------ steps
    def _needs_detection(self, frame: Frame) -> bool:
        if not self._tracks or self._lost_since_detect or self._last_detect_frame is None:
            return True
        return frame.index - self._last_detect_frame >= self.config.detect_every_n_frames

    def _propagate(self, gray: np.ndarray) -> None:
        """Shifts each track's landmarks by their median optical flow since the previous frame."""
        if self._prev_gray is None or self._prev_gray.shape != gray.shape or not self._tracks:
            return
        # Pixel-centre exact halving: x_half = (x + 0.5) / 2 - 0.5.
        n = len(_FLOW_POINTS)
        pts = np.concatenate([t.landmarks68[_FLOW_POINTS] for t in self._tracks]).astype(np.float32).reshape(-1, 1, 2)
        pts = (pts + 0.5) * _FLOW_SCALE - 0.5
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(self._prev_gray, gray, pts, None, **_LK_PARAMS)
        flow = (nxt - pts).reshape(-1, 2) / _FLOW_SCALE
        ok = status.reshape(-1).astype(bool)
        for k, track in enumerate(self._tracks):
            sl = slice(n * k, n * (k + 1))
            if ok[sl].sum() >= n // 3:  # too few tracked points: trust the previous position
                track.landmarks68 = track.landmarks68 + np.median(flow[sl][ok[sl]], axis=0)

    def _match_detections(self, frame: Frame, dets: Detections) -> list[tuple[Track, CropBox]]:
        """New tracks for detections that no existing track covers."""
        new = []
        boxes = [t.box_xyxy() for t in self._tracks]
        for i in np.argsort(-dets.scores):
            box = dets.boxes[i]
            if any(iou(box, b) > self.config.match_iou for b in boxes):
                continue
            if len(self._tracks) + len(new) >= self.config.max_faces:
                break
            track = Track(self._next_id, np.zeros((68, 2), np.float32), frame.index, self.config.filter)
            track.identity.hold_after_weight = self.config.identity_hold_weight
            track.log_head_scale.hold_after_weight = self.config.identity_hold_weight
            if self.config.profile is not None:  # the calibrated person's identity, held from the first frame
                track.identity.hold_after_weight = 0.0
                track.identity.update(self.config.profile.identity, 1.0)
            self._next_id += 1
            new.append((track, CropBox.from_detection(box)))
            boxes.append(box)
        return new

    # ------------------------------------------------------------------ main entry
    def process(self, frame: Frame) -> TrackResult:
        """Tracks the faces of one frame. Frames must come in order; a gap is fine (filters use timestamps).

        A frame from another source, or whose media time runs backwards, starts a new stream: the tracks of
        the old one (and their filters, whose time would run backwards) are dropped first.

        The same as :meth:`prepare`, one :meth:`Regressor.regress` of the plan's crops, then :meth:`finish`;
        a multi-camera pipeline runs those phases itself, with one network call for every camera's crops.
        """
        plan = self.prepare(frame)
        t = time.perf_counter()
        regs = self.regressor.regress(frame, plan.crops)
        return self.finish(plan, regs, (time.perf_counter() - t) * 1e3)

    def prepare(self, frame: Frame) -> TrackPlan:
        """Phase 1 of :meth:`process`: optical flow, detection when due, and the crops to regress.

        Returns:
            The plan; regress ``plan.crops`` (alone or batched with other cameras' crops), then hand the
            regressions to :meth:`finish`. Plans must be finished in the order they were prepared.
        """
        if frame.source_id != self._last_source or frame.t_media_ns < self._last_t_media_ns:
            self.reset()
        self._last_source, self._last_t_media_ns = frame.source_id, frame.t_media_ns
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        gray = None
        if self.config.use_optical_flow:
            gray = cv2.cvtColor(cv2.resize(frame.color, None, fx=_FLOW_SCALE, fy=_FLOW_SCALE, interpolation=cv2.INTER_AREA),
                                cv2.COLOR_RGB2GRAY)  # fmt: skip

        t = time.perf_counter()
        if gray is not None:
            self._propagate(gray)
        timings["flow_ms"] = (time.perf_counter() - t) * 1e3

        jobs: list[tuple[Track, CropBox, bool]] = [
            (tr, CropBox.from_landmarks(tr.landmarks68), False) for tr in self._tracks
        ]
        timings["detect_ms"] = 0.0  # stays 0 on frames where the detector does not run
        if self._needs_detection(frame):
            t = time.perf_counter()
            dets = self.detector.detect(frame.color)
            self._last_detect_frame = frame.index
            self._lost_since_detect = False
            jobs += [(tr, box, True) for tr, box in self._match_detections(frame, dets)]
            timings["detect_ms"] = (time.perf_counter() - t) * 1e3
        crops = [PerspectiveCrop(frame.intrinsics, box) for _, box, _ in jobs]
        return TrackPlan(frame, jobs, crops, gray, timings, t_start)

    def finish(self, plan: TrackPlan, regs: list[Regression], regress_ms: float,
               batch_crops: int | None = None) -> TrackResult:  # fmt: skip
        """Phase 2 of :meth:`process`: identity hold, depth scale, filters and track bookkeeping.

        Args:
            plan: What :meth:`prepare` returned for this frame.
            regs: One regression per ``plan.crops``, in order.
            regress_ms: Duration of the network call the crops went through (ms; reported as ``regress_ms``).
            batch_crops: Crops in that call (all cameras'); each face's ``regress`` share is
                ``regress_ms / batch_crops``. None: this frame's crops alone.
        """
        frame, timings = plan.frame, plan.timings
        timings["regress_ms"] = regress_ms
        t = time.perf_counter()
        share = batch_crops if batch_crops is not None else len(plan.jobs)
        faces = self._update_tracks(frame, plan.jobs, regs, regress_ms / max(1, share))
        timings["filter_ms"] = (time.perf_counter() - t) * 1e3

        self._prev_gray = plan.gray
        timings["total_ms"] = (time.perf_counter() - plan.t_start) * 1e3
        return TrackResult(frame.index, frame.t_capture_ns, time.monotonic_ns(), faces, timings, frame.source_id)

    def _update_tracks(self, frame: Frame, jobs, regs: list[Regression], regress_ms_per_face: float) -> list[FaceState]:
        t_s = frame.t_media_ns * 1e-9  # media time: the filters must not depend on the machine's speed
        candidates: list[tuple[Track, FaceState]] = []
        lost: list[FaceState] = []
        for (track, _, is_new), reg in zip(jobs, regs, strict=True):
            t_face = time.perf_counter()
            landmarks_cam = self.regressor.landmarks_cam_m(reg.identity, reg.expression, reg.rotation, reg.translation_m)
            landmarks = frame.intrinsics.project(landmarks_cam).astype(np.float32)
            if reg.confidence < self.config.min_confidence or not _plausible(landmarks, frame):
                if is_new:
                    continue  # a detection the regressor does not confirm: never started
                track.misses += 1
                if track.misses > self.config.max_misses:
                    lost.append(self._lost_state(frame, track, reg))
                continue
            track.misses = 0
            track.identity.update(reg.identity, reg.confidence)
            t_depth = time.perf_counter()
            identity, translation, offset_head_m = self._metric_head(frame, track, reg, landmarks_cam[INNER_LANDMARKS])
            rotation = reg.rotation
            pose_ms = None  # the pose step's own cost (CoarseNet-D's share of its call, or the ICP)
            if self.config.depth_align and reg.rigid is not None and self.config.use_depth:  # --depth auto
                # CoarseNet-D places the anchor of the true head; the published identity is the depth-scaled
                # one, whose head frame sits offset_head_m from it (HeadScaler.scaled).
                rotation = reg.rigid.rotation
                translation = reg.rigid.anchor_m + rotation @ (offset_head_m - POSE_ANCHOR_HEAD_M)
                pose_ms = reg.rigid.cost_ms
            elif self.config.depth_icp and frame.depth is not None:  # the ICP baseline (--depth icp)
                if self._icp is None:
                    self._icp = DepthIcp(self.regressor.face_model)
                t_icp = time.perf_counter()
                fit = self._icp.refine(frame, identity, reg.expression, rotation, translation)
                rotation, translation = fit.rotation, fit.translation_m
                pose_ms = (time.perf_counter() - t_icp) * 1e3
            depth_ms = (time.perf_counter() - t_depth) * 1e3 + (reg.rigid.cost_ms if reg.rigid is not None else 0.0)
            if self.config.filter is not None:
                rotation, translation, expression = track.filter(rotation, translation, reg.expression, t_s)
            else:
                expression = reg.expression
            # The published landmarks are those of the held identity and the filtered pose and expressions.
            landmarks = self.regressor.landmarks_px(frame, identity, expression, rotation, translation)
            if self.config.profile is not None:  # after the landmarks: they must follow the face as seen
                expression = self.config.profile.apply(expression)
            state = "new" if is_new else "tracking"
            coefficients = FaceCoefficients(identity, expression, rotation, translation, reg.lighting)
            timings_ms = {"regress": regress_ms_per_face, "filter": (time.perf_counter() - t_face) * 1e3}
            if self.config.use_depth and frame.depth is not None:
                timings_ms["depth"] = depth_ms  # scale and pose, CoarseNet-D's call included
                if pose_ms is not None:
                    timings_ms["depth_pose"] = pose_ms
            face = FaceState(track.track_id, coefficients, landmarks, reg.confidence, state, timings_ms)
            candidates.append((track, face))

        # Two tracks on one face (e.g. after two faces crossed): keep the more confident.
        candidates.sort(key=lambda tf: -tf[1].confidence)
        kept: list[tuple[Track, FaceState]] = []
        for track, face in candidates:
            box = points_box(face.landmarks68)
            if any(iou(box, points_box(f.landmarks68)) > self.config.duplicate_iou for _, f in kept):
                if track.age_frames > 0:
                    lost.append(dataclasses.replace(face, state="lost", confidence=0.0))
                    track.misses = self.config.max_misses + 1
                continue
            kept.append((track, face))

        lost_ids = {f.track_id for f in lost}
        kept_ids = {t.track_id for t, _ in kept}
        self._lost_since_detect |= bool(lost_ids)
        survivors = [t for t in self._tracks if t.track_id not in lost_ids]
        survivors += [t for t, _ in kept if t not in survivors]
        for track in survivors:
            track.age_frames += 1
        for track, face in kept:
            track.landmarks68 = face.landmarks68
            track.last_frame = frame.index
        # Tracks that missed this frame (but are not lost yet) stay with their old landmarks.
        self._tracks = [t for t in survivors if t.track_id in kept_ids or t.misses <= self.config.max_misses]
        return [f for _, f in sorted(kept, key=lambda tf: tf[0].track_id)] + lost

    def _metric_head(self, frame: Frame, track: Track, reg: Regression,
                     face_points_cam_m: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """The track's identity, this frame's translation and the identity's head-frame offset
        (:meth:`HeadScaler.scaled`; zero when unscaled), scaled to the depth image where there is one.

        The frame's own depth ratio, measured at ``face_points_cam_m`` ((N,3) points of the regressed face,
        camera frame), sets the distance; the track's held scale sets the size (a head does not change
        size), and carries over to frames without depth. Without any depth: the held identity and the
        regressed translation. ``face_points_cam_m=None`` uses the held scale only (for a regression that
        is not trusted, such as a lost track's last one).
        """
        identity = track.identity.value if track.identity.value is not None else reg.identity
        if not self.config.use_depth:
            return identity, reg.translation_m, np.zeros(3)
        k_frame = None
        if face_points_cam_m is not None and frame.depth is not None:
            k_frame = depth_scale(frame, face_points_cam_m)
            if k_frame is not None:
                track.log_head_scale.update(np.array([np.log(k_frame)]), reg.confidence)
        if track.log_head_scale.value is None:
            return identity, reg.translation_m, np.zeros(3)
        if self._scaler is None:
            self._scaler = HeadScaler(self.regressor.face_model, len(reg.identity))
        k_track = float(np.exp(track.log_head_scale.value[0]))
        identity, offset_head_m = self._scaler.scaled(identity, k_track)
        k = k_frame if k_frame is not None else k_track
        return identity, k * reg.translation_m + reg.rotation @ offset_head_m, offset_head_m

    def _lost_state(self, frame: Frame, track: Track, reg: Regression) -> FaceState:
        """The one message a lost track sends: its last landmarks, zero confidence, state "lost"."""
        ident, translation, _ = self._metric_head(frame, track, reg, None)
        coefficients = FaceCoefficients(ident, np.zeros_like(reg.expression), reg.rotation, translation, reg.lighting)
        return FaceState(track.track_id, coefficients, track.landmarks68, 0.0, "lost")


#: Smallest face (landmark box side, px) the tracker follows; below it crops are mostly upsampled noise.
MIN_FACE_PX = 12.0


def _plausible(landmarks: np.ndarray, frame: Frame) -> bool:
    """Whether predicted landmarks describe a face the next crop can follow (finite, not degenerate, and
    not far outside the image)."""
    if not np.all(np.isfinite(landmarks)):
        return False
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    size = float(max(hi - lo))
    diag = float(np.hypot(frame.intrinsics.width, frame.intrinsics.height))
    centre = (lo + hi) / 2
    inside = -0.5 * size <= centre[0] <= frame.intrinsics.width + 0.5 * size and \
        -0.5 * size <= centre[1] <= frame.intrinsics.height + 0.5 * size
    return MIN_FACE_PX <= size <= 2.0 * diag and inside


