"""A depth-camera model for synthetic RGB-D frames: what an Intel RealSense D4xx does to a perfect depth map.

One model serves the synthetic source (``--noise``) and the RGB-D training crops
(:mod:`engines.train.synth`), so the network is trained on the sensor it is tested on. Each effect follows
from how an active-stereo camera measures depth (Intel's D400 datasheet and its depth-quality white paper):

* **Noise growing with z²**: depth is ``f B / disparity`` and the disparity error is ~0.08 px RMS, so the
  depth error is ``z² σ_d / (f B)``: ~1 mm at 0.5 m and ~4 mm at 1 m for a D435 (B = 50 mm, f ≈ 380 px at
  640x480). Block matching correlates it over a few pixels, so it is drawn at half resolution and upsampled.
* **Holes at grazing angles** where the projector's dots smear and matching fails (the cheeks and nose sides
  of a turned head), with a probability that ramps between :data:`GRAZING_DEG`.
* **Holes at depth edges**: the stereo shadow beside every foreground silhouette (the side of the background
  one camera sees and the other does not), a band of a pixel or three.
* **Speckle dropouts** (small blobs of failed matches) and **quantisation** to the depth unit (1 mm).
* **Depth-to-colour misalignment** of a pixel or two (an imperfect extrinsic calibration): the depth map
  is shifted against the colour image.

Occluders come with the model: :func:`paint_hand` draws a hand (palm and fingers) into colour and depth at
once, in front of the face, so the depth image shows the hand exactly where the colour does.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

#: RMS depth error at 0.5 m (metres); it grows with z².
SIGMA_AT_HALF_M = 0.001
#: Surface-to-ray angles (degrees) between which depth is dropped with a probability ramping 0 -> 1.
GRAZING_DEG = (70.0, 84.0)
#: A neighbour this much farther (metres) marks a silhouette whose far side falls into the stereo shadow.
EDGE_JUMP_M = 0.03


@dataclasses.dataclass(frozen=True)
class DepthSensorModel:
    """D4xx-like degradations of a perfect depth map (see the module docstring).

    Attributes:
        sigma_at_half_m: RMS depth error at 0.5 m; it grows with z².
        grazing_deg: Angles between which depth drops out with a probability ramping 0 -> 1.
        shadow_px: Widest stereo-shadow band at silhouettes, pixels (each image draws 1..this).
        speckle_fraction: Share of the surface lost to small dropout blobs.
        max_shift_px: Largest depth-to-colour misalignment, pixels (per axis).
        unit_m: Depth quantum.
    """

    sigma_at_half_m: float = SIGMA_AT_HALF_M
    grazing_deg: tuple[float, float] = GRAZING_DEG
    shadow_px: int = 3
    speckle_fraction: float = 0.01
    max_shift_px: float = 1.5
    unit_m: float = 0.001

    def shift_px(self, rng: np.random.Generator) -> tuple[float, float]:
        """A depth-to-colour misalignment: one per camera (a sequence keeps it), uniform in ±max_shift_px."""
        return tuple(float(v) for v in rng.uniform(-self.max_shift_px, self.max_shift_px, 2))

    def apply(self, rng: np.random.Generator, depth_m: np.ndarray, focal_px: float,
              shift_px: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:  # fmt: skip
        """The depth map the sensor would report.

        Args:
            rng: Noise source.
            depth_m: (H,W) float32 true z, metres; 0 where nothing is measured (background, holes).
            focal_px: Focal length of this image (sets the metric size of a pixel, for the surface angle).
            shift_px: (dx, dy) misalignment of depth against colour, pixels.

        Returns:
            (H,W) float32 measured z, metres, quantised to ``unit_m``; 0 = no measurement.
        """
        z = np.asarray(depth_m, np.float32)
        h, w = z.shape
        valid = z > 0
        out = z.copy()
        # Noise, spatially correlated over ~2 px like a block matcher's.
        hh, hw = max(1, h // 2), max(1, w // 2)
        noise = cv2.resize(rng.standard_normal((hh, hw), dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        # Bilinear 2x upsampling weighs each sample 3/4, 1/4 per axis: the RMS shrinks to 0.625 (not ~0.7).
        out += valid * noise * (self.sigma_at_half_m * (z / 0.5) ** 2) * np.float32(1.6)
        keep = valid.copy()
        # Grazing angles: the slope of z per metric pixel (z / f metres wide) gives the surface-to-ray angle.
        # Each axis takes the gentler one-sided difference, so a depth edge (a silhouette against a farther
        # surface or no return) is not read as a steep surface: the near side keeps its depth to the edge.
        gy, gx = (_surface_step(np.where(valid, z, np.nan), axis) for axis in (0, 1))
        pixel_m = np.maximum(z, 1e-3) / np.float32(focal_px)
        slope = np.sqrt(gx**2 + gy**2) / pixel_m
        angle = np.degrees(np.arctan(slope))
        lo, hi = self.grazing_deg
        p_drop = np.clip((angle - lo) / (hi - lo), 0, 1)
        keep &= rng.random((h, w)) >= p_drop
        # Stereo shadow: the far side of a silhouette (a jump to the background or a farther surface).
        # A pixel is shadowed when a surface within ``band`` pixels across (one row up or down) is nearer by
        # more than the jump; the nearer surface itself keeps its depth.
        zf = np.where(valid, z, np.float32(1e3))
        band = int(rng.integers(1, self.shadow_px + 1))
        nearest = cv2.erode(zf, np.ones((3, 2 * band + 1), np.uint8))
        keep &= (zf - nearest) <= EDGE_JUMP_M
        # Speckle: small blobs of failed matches.
        if self.speckle_fraction > 0:
            seeds = (rng.random((h, w)) < self.speckle_fraction / 5).astype(np.uint8)
            keep &= ~cv2.dilate(seeds, np.ones((2, 2), np.uint8)).astype(bool)
        out = np.where(keep, out, 0).astype(np.float32)
        dx, dy = shift_px
        if dx or dy:
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            out = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        return (np.rint(out / self.unit_m) * self.unit_m).astype(np.float32)


def _surface_step(z_m: np.ndarray, axis: int) -> np.ndarray:
    """(H,W) |dz| per pixel along ``axis``: the smaller of the two one-sided differences (NaN = no depth is
    skipped; 0 where neither neighbour has depth)."""
    d = np.abs(np.diff(z_m, axis=axis))
    pad = [(0, 0), (0, 0)]
    pad[axis] = (1, 0)
    backward = np.pad(d, pad, constant_values=np.nan)
    pad[axis] = (0, 1)
    forward = np.pad(d, pad, constant_values=np.nan)
    return np.nan_to_num(np.fmin(backward, forward), nan=0.0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Hand:
    """A hand held in front of the face, in image pixels.

    Attributes:
        centre_px: (x, y) palm centre.
        palm_px: Palm half-width; the fingers are about as long again.
        angle_deg: Direction the fingers point (0 = up in the image, clockwise).
        depth_m: Depth of the palm (the fingers curve 1 cm nearer).
        rgb: Skin colour.
    """

    centre_px: tuple[float, float]
    palm_px: float
    angle_deg: float
    depth_m: float
    rgb: tuple[int, int, int] = (196, 148, 120)

    @classmethod
    def random(cls, rng: np.random.Generator, face_centre_px, face_size_px: float, face_depth_m: float,
               coverage: float | None = None) -> Hand:  # fmt: skip
        """A hand over part of a face (box ``face_size_px`` around ``face_centre_px``), 3-10 cm in front of it.

        ``coverage`` (~share of the face box covered) sets the palm size; None: anywhere from 10 to 45 %.
        """
        cov = float(rng.uniform(0.1, 0.45) if coverage is None else coverage)
        palm = cls.palm_px_for(face_size_px, cov)
        ang = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.15, 0.45) * face_size_px
        centre = (float(face_centre_px[0] + dist * np.cos(ang)), float(face_centre_px[1] + dist * np.sin(ang)))
        tone = rng.uniform(0.55, 1.1)
        rgb = tuple(int(np.clip(c * tone, 0, 255)) for c in (205, 155, 125))
        return cls(centre, float(palm), float(rng.uniform(-60, 60)), float(face_depth_m - rng.uniform(0.03, 0.10)), rgb)

    @staticmethod
    def palm_px_for(face_size_px: float, coverage: float) -> float:
        """Palm half-width that covers ~``coverage`` of a ``face_size_px`` square (when the hand lies in it)."""
        # The palm ellipse (1.0 x 1.3 half-axes), four fingers and the thumb cover 6.4 palm_px² (measured on
        # :meth:`mask` at palm_px = 100; the fingers overlap the palm).
        return float(face_size_px * np.sqrt(coverage / 6.4))

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """(H,W) uint8 1 where the hand is."""
        m = np.zeros(shape, np.uint8)
        c = np.array(self.centre_px, np.float64)
        a = np.radians(self.angle_deg)
        up = np.array([np.sin(a), -np.cos(a)])  # finger direction
        side = np.array([up[1], -up[0]])
        cv2.ellipse(m, (int(c[0]), int(c[1])), (int(self.palm_px), int(1.3 * self.palm_px)), float(self.angle_deg),
                    0, 360, 1, -1)  # fmt: skip
        width = max(1, int(0.42 * self.palm_px))
        for i, length in enumerate((1.0, 1.15, 1.1, 0.85)):  # index .. little finger
            base = c + up * 1.0 * self.palm_px + side * (i - 1.5) * 0.5 * self.palm_px
            tip = base + up * length * self.palm_px
            cv2.line(m, tuple(int(v) for v in base), tuple(int(v) for v in tip), 1, width)
        thumb0 = c + side * 0.9 * self.palm_px
        cv2.line(m, tuple(int(v) for v in thumb0), tuple(int(v) for v in thumb0 + (side + up) * 0.7 * self.palm_px),
                 1, width)  # fmt: skip
        return m


def paint_hand(hand: Hand, color: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
    """Draws ``hand`` into an RGB image and its depth map, in place (the hand is in front: depth takes the
    nearer of the two). Returns the (H,W) bool mask of the hand."""
    m = hand.mask(color.shape[:2]).astype(bool)
    if not m.any():
        return m
    # A little shading across the palm so the hand is not a flat sticker.
    yy, xx = np.nonzero(m)
    r = np.hypot(xx - hand.centre_px[0], yy - hand.centre_px[1]) / max(hand.palm_px * 2.3, 1.0)
    shade = np.clip(1.0 - 0.35 * r, 0.55, 1.0)[:, None]
    color[yy, xx] = np.clip(np.array(hand.rgb, np.float32)[None] * shade, 0, 255).astype(color.dtype)
    z_hand = (hand.depth_m - 0.01 * np.clip(r, 0, 1)).astype(np.float32)  # fingers curve toward the camera
    z = depth_m[yy, xx]
    depth_m[yy, xx] = np.where((z > 0) & (z < z_hand), z, z_hand)
    return m


__all__ = ["DepthSensorModel", "EDGE_JUMP_M", "GRAZING_DEG", "Hand", "SIGMA_AT_HALF_M", "paint_hand"]
