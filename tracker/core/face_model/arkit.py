"""ICT-53 <-> ARKit-52 expression mapping (ARCHITECTURE §3).

ICT's 53 expressions are ARKit-named with ``_L``/``_R`` suffixes. ARKit's 52 come in Apple's order (the
order Live Link Face sends). ``browInnerUp`` and ``cheekPuff`` are split in two halves in ICT, so ARKit
takes their mean and the reverse mapping writes the ARKit value to both halves; ``tongueOut`` is not
modelled (always 0, reported as unsupported in the stream metadata). The other 49 channels map one to one.
"""

from __future__ import annotations

import numpy as np

from tracker.core.errors import ConfigError

#: ICT-FaceKit's expression order (``vertex_indices.json["expressions"]``); checked at cache build time.
ICT_EXPRESSION_NAMES: tuple[str, ...] = (
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R",
    "cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R", "eyeBlink_L", "eyeBlink_R",
    "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R",
    "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R", "eyeWide_L", "eyeWide_R", "jawForward",
    "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimple_L", "mouthDimple_R", "mouthFrown_L",
    "mouthFrown_R", "mouthFunnel", "mouthLeft", "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L",
    "mouthPress_R", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R",
    "mouthUpperUp_L", "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
)  # fmt: skip

#: ARKit's 52 blendshape names in Apple's order.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft",
    "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft",
    "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip

NUM_ICT = len(ICT_EXPRESSION_NAMES)
NUM_ARKIT = len(ARKIT_NAMES)
#: ARKit channels the ICT model cannot express; always 0 in our output.
UNSUPPORTED_ARKIT = ("tongueOut",)


def _arkit_name(ict_name: str) -> str:
    if ict_name.endswith("_L"):
        return ict_name[:-2] + "Left"
    if ict_name.endswith("_R"):
        return ict_name[:-2] + "Right"
    return ict_name


def _build_matrix() -> np.ndarray:
    """(52,53) float32 matrix M with arkit = M @ ict."""
    m = np.zeros((NUM_ARKIT, NUM_ICT), dtype=np.float32)
    index = {n: i for i, n in enumerate(ARKIT_NAMES)}
    for j, name in enumerate(ICT_EXPRESSION_NAMES):
        mapped = _arkit_name(name)
        if mapped in index:
            m[index[mapped], j] = 1.0
        else:  # browInnerUp_L/R, cheekPuff_L/R: ARKit has one symmetric channel.
            m[index[name[:-2]], j] = 0.5
    return m


ICT_TO_ARKIT = _build_matrix()
ICT_TO_ARKIT.setflags(write=False)
# Reverse: every ICT channel takes its ARKit channel's value (both halves of a merged pair get the mean).
ARKIT_TO_ICT = (ICT_TO_ARKIT.T > 0).astype(np.float32)
ARKIT_TO_ICT.setflags(write=False)
#: Indices (into the ICT order) of the 49 channels that map one to one.
ONE_TO_ONE_ICT = tuple(int(j) for j in np.flatnonzero((ICT_TO_ARKIT == 1.0).any(axis=0)))


def ict_to_arkit(expression: np.ndarray) -> np.ndarray:
    """Maps ICT coefficients to ARKit values.

    Args:
        expression: (..., 53) ICT expression coefficients.

    Returns:
        (..., 52) float32 ARKit values in Apple order; ``tongueOut`` is 0.
    """
    e = np.asarray(expression, dtype=np.float32)
    if e.shape[-1:] != (NUM_ICT,):
        raise ConfigError(f"expected (..., {NUM_ICT}) ICT expression coefficients, got shape {e.shape}")
    return e @ ICT_TO_ARKIT.T


def arkit_to_ict(arkit: np.ndarray) -> np.ndarray:
    """Maps ARKit values to ICT coefficients.

    Args:
        arkit: (..., 52) ARKit values in Apple order (``tongueOut`` is ignored).

    Returns:
        (..., 53) float32 ICT coefficients; both halves of ``browInnerUp`` and ``cheekPuff`` get the
        ARKit value.
    """
    a = np.asarray(arkit, dtype=np.float32)
    if a.shape[-1:] != (NUM_ARKIT,):
        raise ConfigError(f"expected (..., {NUM_ARKIT}) ARKit values, got shape {a.shape}")
    return a @ ARKIT_TO_ICT.T
