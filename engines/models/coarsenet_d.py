"""CoarseNet-D: the learned rigid alignment of RGB-D frames (issue 17; ARCHITECTURE §6, after Guo et al.).

Reads a face crop's colour and depth (:mod:`tracker.core.depth_crop`: 5 channels at 64 px, RGB in [0,1],
depth relative to the crop's reference depth, validity) and regresses the head's rigid pose in the crop's
virtual camera, in one pass: no ICP, no iterations at tracking time. The colour CoarseNet still gives
identity, expression and lighting (depth adds little to them); this network replaces its pose, which colour
alone leaves 2-3° and several millimetres off.

Input ``image`` (B, 5, 64, 64) float32. Outputs:

* ``rotation6d`` (B, 6): head -> virtual camera rotation, first two columns (Zhou et al. 2019).
* ``offset`` (B, 2): the pose anchor's projection relative to the crop centre, in crop sides (as CoarseNet's).
* ``depth_offset`` (B, 1): the anchor's depth minus the crop's reference depth, in units of
  :data:`tracker.core.depth_crop.DEPTH_RANGE_M`: the distance comes from the depth image, not from the face's
  apparent size.

The backbone is CoarseNet's (plain 3x3 residual stages: fast to train on a CPU), but the head reads the
flattened last feature map instead of a global average: where a point lies in the crop is what pose is, and
average pooling throws that away.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from engines.models.coarsenet import ConvBNAct, ResidualStage, _ch

INPUT_NAME = "image"
OUTPUT_NAMES = ("rotation6d", "offset", "depth_offset")
IN_CHANNELS = 5


@dataclasses.dataclass(frozen=True)
class CoarseNetDConfig:
    """Architecture hyper-parameters.

    Attributes:
        input_size_px: Side of the square input crop.
        width: Channel multiplier.
        stem_channels: Channels of the stride-2 stem.
        stages: Output channels of the residual stages; each halves the resolution.
        hidden: Width of the fully connected layer on the flattened features.
    """

    input_size_px: int = 64
    width: float = 1.0
    stem_channels: int = 24
    stages: tuple[int, ...] = (32, 64, 128, 192)
    hidden: int = 256


class CoarseNetD(nn.Module):
    """See the module docstring."""

    def __init__(self, config: CoarseNetDConfig | None = None):
        super().__init__()
        self.config = cfg = config or CoarseNetDConfig()
        c = _ch(cfg.stem_channels * cfg.width)
        layers: list[nn.Module] = [ConvBNAct(IN_CHANNELS, c, 3, 2)]
        for cout in cfg.stages:
            cout = _ch(cout * cfg.width)
            layers.append(ResidualStage(c, cout))
            c = cout
        self.backbone = nn.Sequential(*layers)
        side = cfg.input_size_px // 2 ** (1 + len(cfg.stages))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, cfg.hidden), nn.ReLU(inplace=True))
        self.head = nn.Linear(cfg.hidden, 6 + 2 + 1)
        with torch.no_grad():  # start at the prior: identity rotation, centred anchor at the reference depth
            self.head.weight.mul_(0.01)
            self.head.bias.zero_()
            self.head.bias[:6].copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: image (B, 5, S, S). Returns: dict of ``OUTPUT_NAMES``."""
        out = self.head(self.fc(self.backbone(image)))
        return dict(zip(OUTPUT_NAMES, torch.split(out, [6, 2, 1], dim=1), strict=True))


__all__ = ["CoarseNetD", "CoarseNetDConfig", "INPUT_NAME", "IN_CHANNELS", "OUTPUT_NAMES"]
