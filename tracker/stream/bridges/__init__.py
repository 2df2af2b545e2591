"""Bridges from the facetrack stream to game-engine protocols: VMC (OSC) and Unreal Live Link Face (UDP)."""

from tracker.stream.bridges.base import run_bridge
from tracker.stream.bridges.livelink import LIVELINK_DEFAULT_PORT, LiveLinkFaceEncoder, LiveLinkFaceSender
from tracker.stream.bridges.vmc import VMC_DEFAULT_PORT, VmcSender

__all__ = [
    "LIVELINK_DEFAULT_PORT", "VMC_DEFAULT_PORT", "LiveLinkFaceEncoder", "LiveLinkFaceSender", "VmcSender",
    "run_bridge",
]  # fmt: skip
