"""CoarseNet: a MobileNet-class CNN that regresses face-model coefficients from a face crop.

Input: (B, C, 128, 128) float32, C = 3 (RGB in [0,1]) or 4 (RGB + depth channel, the RGB-D variant; set
``in_channels=4``). Outputs (one head per group, all relative to the crop's virtual camera, see
tracker/core/crop.py):

* ``identity`` (B, K): first K ICT identity modes.
* ``expression`` (B, 53): ICT expressions in [0,1] (sigmoid).
* ``rotation6d`` (B, 6): head -> virtual camera rotation, first two columns (Zhou et al. 2019).
* ``offset`` (B, 2): head-origin projection relative to the crop centre, in crop sides.
* ``log_scale`` (B, 1): log(focal / (crop size * depth)).
* ``lighting`` (B, 27): second-order SH, 9 per colour channel, RGB-major.
* ``confidence`` (B, 1): probability that the crop holds a well-tracked face (sigmoid).

In training mode the dict also holds ``expression_logit`` (B, 53), the expression head's pre-sigmoid values:
the expression loss works on them (binary cross-entropy with logits, whose gradient ``p - y`` does not vanish
where the sigmoid saturates). Eval mode (and so the exported ONNX file) has exactly ``OUTPUT_NAMES``.

Written in the project (torchvision does not import beside the CPU torch build here). A small residual
network of plain 3x3 convolutions (about 60 M multiply-adds at 128 px, MobileNet's budget): on this
CPU-only project's 2 cores a training step of a MobileNetV2 of the same inference cost took 4.5x the CPU
time (depthwise convolutions' backward pass is slow on CPU), and training time is the binding limit.
Batch norm is folded into the convolutions by the ONNX exporter (eval mode); engines/train/warm_start.py
rebuilds trainable batch norms from such a file.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from tracker.core.face_model.arkit import NUM_ICT

OUTPUT_NAMES = ("identity", "expression", "rotation6d", "offset", "log_scale", "lighting", "confidence")
#: Expression-head bias at initialisation. sigmoid(-2) = 0.12 sits near the mean of the synthetic expression
#: labels (sparse activations in [0, 1]). v1 started at -3 (0.047), where the sigmoid's slope is 0.045 and an L1
#: loss on the sparse labels (whose median is 0) held the head there: its blinks never moved from 0.047.
EXPRESSION_INIT_LOGIT = -2.0


@dataclasses.dataclass(frozen=True)
class CoarseNetConfig:
    """Architecture hyper-parameters.

    Attributes:
        in_channels: 3 for RGB, 4 for RGB-D.
        input_size_px: Side of the square input crop.
        num_identity: K, the identity modes regressed.
        width: Channel multiplier of the backbone.
        stem_channels: Channels of the stride-2 stem convolution.
        stages: Output channels of the residual stages; each halves the resolution.
    """

    in_channels: int = 3
    input_size_px: int = 128
    num_identity: int = 40
    width: float = 1.0
    stem_channels: int = 24
    stages: tuple[int, ...] = (32, 64, 128, 256)

    def output_sizes(self) -> dict[str, int]:
        return {"identity": self.num_identity, "expression": NUM_ICT, "rotation6d": 6, "offset": 2,
                "log_scale": 1, "lighting": 27, "confidence": 1}  # fmt: skip


def _ch(c: float) -> int:
    return max(8, int(round(c / 8)) * 8)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, act: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualStage(nn.Module):
    """Two 3x3 convolutions (the first with stride 2) plus a strided 1x1 projection on the skip path."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(ConvBNAct(cin, cout, 3, 2), ConvBNAct(cout, cout, 3, 1, act=False))
        self.skip = ConvBNAct(cin, cout, 1, 2, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class CoarseNet(nn.Module):
    """See the module docstring."""

    def __init__(self, config: CoarseNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or CoarseNetConfig()
        c = _ch(cfg.stem_channels * cfg.width)
        layers: list[nn.Module] = [ConvBNAct(cfg.in_channels, c, 3, 2)]
        for cout in cfg.stages:
            cout = _ch(cout * cfg.width)
            layers.append(ResidualStage(c, cout))
            c = cout
        self.backbone = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        sizes = cfg.output_sizes()
        self.head = nn.Linear(c, sum(sizes.values()))
        self._splits = [sizes[n] for n in OUTPUT_NAMES]
        # Start at the prior: zero identity, neutral-ish expressions, identity rotation, typical scale.
        with torch.no_grad():
            self.head.weight.mul_(0.01)
            self.head.bias.zero_()
            bias = dict(zip(OUTPUT_NAMES, torch.split(self.head.bias, self._splits), strict=True))
            bias["expression"].fill_(EXPRESSION_INIT_LOGIT)
            bias["rotation6d"].copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))
            bias["log_scale"].fill_(1.0)
            bias["lighting"][0::9].fill_(1.0)  # the DC term of each colour channel: neutral white light

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: image (B, C, H, W) float32. Returns: dict of the outputs named in the module docstring (plus
        ``expression_logit`` in training mode)."""
        x = self.pool(self.backbone(image)).flatten(1)
        parts = dict(zip(OUTPUT_NAMES, torch.split(self.head(x), self._splits, dim=1), strict=True))
        if self.training:
            parts["expression_logit"] = parts["expression"]
        parts["expression"] = torch.sigmoid(parts["expression"])
        parts["confidence"] = torch.sigmoid(parts["confidence"])
        return parts
