"""The scripted performance of the synthetic source: a pure function of (seed, time).

A seed fixes a random but plausible identity (identity coefficients ~ N(0, 0.8) on the first 40 ICT
modes), a base head position and a lighting rig. Time is cut into cycles of :data:`CYCLE_S` seconds; each
cycle is drawn from ``(seed, cycle)`` alone and starts and ends with a still, frontal, neutral head, so
frames can be computed in any order without rendering or replaying earlier ones:

* head motion, one segment at a time between holds: a yaw sweep (up to ±45°), a pitch sweep (up to ±30°),
  a roll sweep (up to ±20°), a dolly toward the camera (about 0.4 m) and away (about 1.0 m), and a
  small free wander; the first cycle runs them in this order, later cycles shuffle them;
* expressions, one event at a time: smile, frown, brow raise, pucker, jaw open, surprise, asymmetric
  (wink, half smile, one brow, sneer, mouth/jaw to one side) and speech-like mouth motion at syllable rate;
* blinks every 2-5 s, slow gaze shifts, and lighting that drifts continuously (key light direction,
  intensity and colour, ambient level).

The eval and the trainer call :func:`performance_frame` to get exact parameters without rendering.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ICT_EXPRESSION_NAMES, NUM_ICT
from tracker.core.face_model.sh import sh_ambient, sh_directional
from tracker.core.geometry import rotation_from_ypr_deg
from tracker.core.types import FaceCoefficients

#: Length of one scripted cycle, seconds.
CYCLE_S = 13.0
#: Identity prior of the synthetic subjects.
IDENTITY_MODES = 40
IDENTITY_SIGMA = 0.8
#: Head-pose amplitude ranges (deg) of the sweeps and the dolly range (m).
YAW_RANGE_DEG = (40.0, 45.0)
PITCH_RANGE_DEG = (24.0, 30.0)
ROLL_RANGE_DEG = (15.0, 20.0)
NEAR_RANGE_M = (0.40, 0.45)
FAR_RANGE_M = (0.95, 1.0)

_IDX = {n: i for i, n in enumerate(ICT_EXPRESSION_NAMES)}
_SEGMENTS = ("yaw", "pitch", "roll", "dolly", "wander")
_SEGMENT_S = {"yaw": 2.4, "pitch": 1.8, "roll": 1.4, "dolly": 3.0, "wander": 1.2}
_EVENTS = ("smile", "frown", "brows", "pucker", "jaw", "surprise", "asym", "speech")


def _names(**weights: float) -> np.ndarray:
    e = np.zeros(NUM_ICT, np.float64)
    for k, v in weights.items():
        e[_IDX[k]] = v
    return e


def _both(name: str, value: float) -> dict[str, float]:
    return {f"{name}_L": value, f"{name}_R": value}


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _envelope(t: float, start: float, duration: float, attack: float = 0.25) -> float:
    """0 -> 1 -> 0 over [start, start + duration] with smooth attack and release of ``attack`` x duration."""
    s = (t - start) / duration
    if s <= 0 or s >= 1:
        return 0.0
    return float(_smoothstep(s / attack) * _smoothstep((1 - s) / attack))


@dataclasses.dataclass(frozen=True)
class Subject:
    """What a seed fixes for the whole performance."""

    identity: np.ndarray
    base_translation_m: np.ndarray
    light_phase: np.ndarray
    light_colour: np.ndarray


def performance_subject(seed: int) -> Subject:
    """The identity, base head position and lighting rig of a seed."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5B1EC7])
    identity = rng.normal(0.0, IDENTITY_SIGMA, IDENTITY_MODES).astype(np.float32)
    base = np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.02, 0.03), rng.uniform(0.55, 0.70)])
    phase = rng.uniform(0, 2 * np.pi, 4)
    colour = 1.0 + rng.uniform(-0.08, 0.08, 3)
    return Subject(identity, base, phase, colour)


def _cycle_plan(seed: int, cycle: int) -> dict:
    """Segments, expression events and blinks of one cycle (times in seconds from the cycle start)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(cycle), 0xC7C1E])
    order = list(_SEGMENTS)
    if cycle > 0:
        rng.shuffle(order)
    segments, t = [], 0.6
    for kind in order:
        dur = _SEGMENT_S[kind]
        amp = {
            "yaw": rng.uniform(*YAW_RANGE_DEG) * rng.choice([-1, 1]),
            "pitch": rng.uniform(*PITCH_RANGE_DEG) * rng.choice([-1, 1]),
            "roll": rng.uniform(*ROLL_RANGE_DEG) * rng.choice([-1, 1]),
            "dolly": (rng.uniform(*NEAR_RANGE_M), rng.uniform(*FAR_RANGE_M)),
            "wander": rng.uniform(-1, 1, 6),
        }[kind]
        segments.append((kind, t, dur, amp))
        t += dur + rng.uniform(0.25, 0.4)  # a hold between motions (the plan fits in 12 s)
    events_order = list(_EVENTS)
    rng.shuffle(events_order)
    events, t = [], 0.3
    for kind in events_order:
        dur = 2.0 if kind == "speech" else rng.uniform(0.8, 1.1)
        if t + dur > CYCLE_S - 0.4:
            break
        events.append((kind, t, dur, _event_target(kind, rng), rng.integers(0, 2**31)))
        t += dur + rng.uniform(0.05, 0.15)
    blinks, t = [], rng.uniform(0.5, 2.0)
    while t < CYCLE_S - 0.5:
        blinks.append(t)
        t += rng.uniform(2.0, 5.0)
    gaze = [(rng.uniform(0, CYCLE_S - 1.0), rng.uniform(-1, 1), rng.uniform(-0.6, 0.6)) for _ in range(3)]
    return {"segments": segments, "events": events, "blinks": blinks, "gaze": sorted(gaze)}


def _event_target(kind: str, rng: np.random.Generator) -> np.ndarray:
    u = rng.uniform
    if kind == "smile":
        return _names(**_both("mouthSmile", u(0.6, 1.0)), **_both("cheekSquint", u(0.2, 0.5)),
                      **_both("eyeSquint", u(0.1, 0.3)), jawOpen=u(0.0, 0.2))  # fmt: skip
    if kind == "frown":
        return _names(**_both("mouthFrown", u(0.6, 1.0)), **_both("browDown", u(0.4, 0.9)),
                      **_both("mouthStretch", u(0.0, 0.3)), mouthShrugLower=u(0.2, 0.6))  # fmt: skip
    if kind == "brows":
        return _names(**_both("browInnerUp", u(0.6, 1.0)), **_both("browOuterUp", u(0.5, 1.0)),
                      **_both("eyeWide", u(0.0, 0.4)))  # fmt: skip
    if kind == "pucker":
        return _names(mouthPucker=u(0.7, 1.0), mouthFunnel=u(0.1, 0.4), **_both("cheekPuff", u(0.0, 0.3)))
    if kind == "jaw":
        return _names(
            jawOpen=u(0.6, 1.0), **_both("mouthLowerDown", u(0.1, 0.4)), **_both("mouthUpperUp", u(0.0, 0.3))
        )
    if kind == "surprise":
        return _names(jawOpen=u(0.3, 0.6), mouthFunnel=u(0.1, 0.3), **_both("browInnerUp", u(0.7, 1.0)),
                      **_both("browOuterUp", u(0.6, 1.0)), **_both("eyeWide", u(0.5, 1.0)))  # fmt: skip
    if kind == "asym":
        side, other = ("_L", "_R") if rng.uniform() < 0.5 else ("_R", "_L")
        choice = int(rng.integers(0, 5))
        if choice == 0:
            return _names(
                **{
                    "eyeBlink" + side: 1.0,
                    "cheekSquint" + side: u(0.3, 0.6),
                    "mouthSmile" + side: u(0.2, 0.5),
                }
            )
        if choice == 1:
            return _names(
                **{
                    "mouthSmile" + side: u(0.7, 1.0),
                    "cheekSquint" + side: u(0.2, 0.5),
                    "mouthDimple" + other: u(0, 0.3),
                }
            )
        if choice == 2:
            return _names(
                **{
                    "browOuterUp" + side: u(0.7, 1.0),
                    "browInnerUp" + side: u(0.3, 0.7),
                    "browDown" + other: u(0.3, 0.7),
                }
            )
        if choice == 3:
            return _names(
                **{
                    "noseSneer" + side: u(0.6, 1.0),
                    "mouthUpperUp" + side: u(0.3, 0.7),
                    "eyeSquint" + side: u(0.2, 0.5),
                }
            )
        lr = "Left" if side == "_L" else "Right"
        return _names(
            **{"mouth" + lr: u(0.5, 1.0), "jaw" + lr: u(0.2, 0.6), "mouthPress" + side: u(0.0, 0.4)}
        )
    return np.zeros(NUM_ICT)  # speech is procedural (see _speech)


def _speech(t: float, start: float, duration: float, seed: int) -> np.ndarray:
    """Syllable-rate mouth motion: jaw opening and lip shapes changing ~4.5 times a second."""
    rng = np.random.default_rng([seed, 0x5BEEC])
    n = int(duration * 4.5) + 2
    jaw = rng.uniform(0.05, 0.45, n)
    shapes = rng.integers(0, 4, n)
    x = (t - start) * 4.5
    i = int(np.clip(np.floor(x), 0, n - 2))
    f = float(_smoothstep(x - i))
    e = np.zeros(NUM_ICT)
    for k, w in ((i, 1 - f), (i + 1, f)):
        e[_IDX["jawOpen"]] += w * jaw[k]
        shape = ("mouthFunnel", "mouthPucker", "mouthClose", "mouthStretch")[shapes[k]]
        if shape == "mouthStretch":
            e[_IDX["mouthStretch_L"]] += w * 0.4
            e[_IDX["mouthStretch_R"]] += w * 0.4
        elif shape == "mouthClose":
            e[_IDX["mouthClose"]] += w * min(jaw[k], 0.3)
        else:
            e[_IDX[shape]] += w * 0.5
    e[_IDX["mouthLowerDown_L"]] = e[_IDX["mouthLowerDown_R"]] = 0.5 * e[_IDX["jawOpen"]]
    return e * _envelope(t, start, duration, attack=0.1)


def _pose(plan: dict, tau: float, subject: Subject) -> tuple[np.ndarray, np.ndarray]:
    yaw = pitch = roll = 0.0
    trans = subject.base_translation_m.copy()
    for kind, start, dur, amp in plan["segments"]:
        s = (tau - start) / dur
        if not 0 < s < 1:
            continue
        if kind in ("yaw", "pitch", "roll"):
            value = amp * np.sin(2 * np.pi * s)  # 0 -> +A -> -A -> 0: the full sweep, ending still
            value *= _smoothstep(s / 0.08) * _smoothstep((1 - s) / 0.08)
            if kind == "yaw":
                yaw = value
            elif kind == "pitch":
                pitch = value
            else:
                roll = value
        elif kind == "dolly":
            near, far = amp
            z0 = trans[2]
            # z0 -> near -> far -> z0 with eased thirds.
            if s < 1 / 3:
                trans[2] = z0 + (near - z0) * _smoothstep(3 * s)
            elif s < 2 / 3:
                trans[2] = near + (far - near) * _smoothstep(3 * s - 1)
            else:
                trans[2] = far + (z0 - far) * _smoothstep(3 * s - 2)
        else:  # wander: a small Lissajous of all three angles and a lateral drift
            w = np.sin(np.pi * s) ** 2
            yaw = 15 * amp[0] * w * np.sin(2 * np.pi * s * (1 + abs(amp[3])))
            pitch = 10 * amp[1] * w * np.sin(2 * np.pi * s * (1 + abs(amp[4])))
            roll = 6 * amp[2] * w
            trans = trans + np.array([0.04 * amp[5] * w, 0.0, 0.0])
    return rotation_from_ypr_deg(yaw, pitch, roll), trans


def _expression(plan: dict, tau: float) -> np.ndarray:
    e = np.zeros(NUM_ICT)
    for kind, start, dur, target, ev_seed in plan["events"]:
        if not start < tau < start + dur:
            continue
        e += (
            _speech(tau, start, dur, int(ev_seed))
            if kind == "speech"
            else target * _envelope(tau, start, dur)
        )
    for tb in plan["blinks"]:
        # Close in ~80 ms, reopen in ~170 ms.
        s = tau - tb
        if 0 < s < 0.25:
            w = _smoothstep(s / 0.08) if s < 0.08 else _smoothstep(1 - (s - 0.08) / 0.17)
            e[_IDX["eyeBlink_L"]] = max(e[_IDX["eyeBlink_L"]], w)
            e[_IDX["eyeBlink_R"]] = max(e[_IDX["eyeBlink_R"]], w)
    # Gaze: hold a direction for a while, switching with quick (~60 ms) saccades.
    gx = gy = 0.0
    for tg, x, y in plan["gaze"]:
        w = _smoothstep((tau - tg) / 0.06) * _smoothstep((tg + 1.2 - tau) / 0.06)
        gx, gy = gx + w * x, gy + w * y
    # Subject's left (+x in the model) is eyeLookOut_L / eyeLookIn_R.
    if gx > 0:
        e[_IDX["eyeLookOut_L"]] += gx * 0.7
        e[_IDX["eyeLookIn_R"]] += gx * 0.7
    else:
        e[_IDX["eyeLookIn_L"]] -= gx * 0.7
        e[_IDX["eyeLookOut_R"]] -= gx * 0.7
    key = "eyeLookUp" if gy > 0 else "eyeLookDown"
    e[_IDX[key + "_L"]] += abs(gy) * 0.6
    e[_IDX[key + "_R"]] += abs(gy) * 0.6
    return np.clip(e, 0.0, 1.0)


def _lighting(t: float, subject: Subject) -> np.ndarray:
    """A key light drifting around the front of the face plus a fill and an ambient term."""
    ph = subject.light_phase
    az = np.deg2rad(35 * np.sin(2 * np.pi * t / 17.0 + ph[0]))
    el = np.deg2rad(30 + 15 * np.sin(2 * np.pi * t / 23.0 + ph[1]))
    # Direction toward the light, camera frame (x right, y down, z forward): in front of the face is -z.
    key_dir = np.array([np.sin(az) * np.cos(el), -np.sin(el), -np.cos(az) * np.cos(el)])
    key = 0.65 + 0.15 * np.sin(2 * np.pi * t / 11.0 + ph[2])
    warm = 0.05 * np.sin(2 * np.pi * t / 29.0 + ph[3])
    key_rgb = key * subject.light_colour * np.array([1 + warm, 1.0, 1 - warm])
    ambient = 0.42 + 0.06 * np.sin(2 * np.pi * t / 13.0 + ph[0] + 1.0)
    fill_dir = np.array([-key_dir[0], 0.2, -0.8])
    return (
        sh_ambient((ambient, ambient, ambient))
        + sh_directional(key_dir, key_rgb)
        + sh_directional(fill_dir, (0.15, 0.15, 0.15))
    ).astype(np.float32)


def performance_at(seed: int, t_s: float, subject: Subject | None = None) -> FaceCoefficients:
    """The exact face parameters of the performance of ``seed`` at time ``t_s`` (seconds from the start).

    Args:
        seed: Any int.
        t_s: Time in seconds, >= 0 (fractional times give sub-frame poses, e.g. for motion blur).
        subject: ``performance_subject(seed)``, to skip recomputing it.

    Returns:
        Identity (40,), expression (53,), rotation, translation (m) and lighting (27,).
    """
    if not (np.isfinite(t_s) and t_s >= 0):
        raise ConfigError(f"performance time must be a finite t_s >= 0, got {t_s}")
    subject = subject if subject is not None else performance_subject(seed)
    cycle = int(t_s // CYCLE_S)
    tau = t_s - cycle * CYCLE_S
    plan = _cycle_plan(seed, cycle)
    rotation, translation = _pose(plan, tau, subject)
    return FaceCoefficients(
        subject.identity,
        _expression(plan, tau).astype(np.float32),
        rotation,
        translation,
        _lighting(t_s, subject),
    )


def performance_frame(seed: int, frame_index: int, fps: float = 30.0) -> FaceCoefficients:
    """The face parameters of frame ``frame_index`` of the performance of ``seed`` at ``fps``."""
    if frame_index < 0 or fps <= 0:
        raise ConfigError(f"need frame_index >= 0 and fps > 0, got {frame_index}, {fps}")
    return performance_at(seed, frame_index / fps)
