"""DetailNet: a small CNN that reads expression channels from one eye or mouth patch.

Input ``patch``: (B, 1, S, S) float32 grey in [0,1] (S = 48 for an eye, 64 for the mouth; see
:mod:`tracker.core.regions`). Output ``values``: (B, K) float32 in [0,1], the ARKit channels of
:data:`tracker.core.regions.EYE_CHANNELS_RIGHT` (eye) or :data:`~tracker.core.regions.MOUTH_CHANNELS` (mouth).
In training mode the network returns the pre-sigmoid logits instead (the loss is binary cross-entropy with
logits, whose gradient does not vanish where the sigmoid saturates: v1's blink head sat at its initial value).

Each patch is normalised to zero mean and unit contrast inside the network, so the exported file needs no
pre-processing contract beyond "grey in [0,1]", and exposure changes do not reach the features.
Plain 3x3 convolutions (their backward pass is several times faster than depthwise ones on the CPU, where
this project trains): about 5 M multiply-adds per eye patch, 9 M per mouth patch.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_NAME = "patch"
OUTPUT_NAME = "values"


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DetailNet(nn.Module):
    """See the module docstring.

    Args:
        num_outputs: K.
        widths: Channels of the four stride-2 stages.
    """

    def __init__(self, num_outputs: int, widths: tuple[int, int, int, int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.features = nn.Sequential(
            _conv(1, w0, 2),
            _conv(w0, w1, 2), _conv(w1, w1, 1),
            _conv(w1, w2, 2), _conv(w2, w2, 1),
            _conv(w2, w3, 2),
        )  # fmt: skip
        self.head = nn.Linear(w3, num_outputs)
        self.num_outputs = num_outputs

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        mean = patch.mean(dim=(2, 3), keepdim=True)
        std = patch.std(dim=(2, 3), keepdim=True)
        x = (patch - mean) / (std + 0.02)  # +0.02: a flat patch (covered eye) stays finite
        logits = self.head(self.features(x).mean(dim=(2, 3)))
        return logits if self.training else torch.sigmoid(logits)


__all__ = ["INPUT_NAME", "OUTPUT_NAME", "DetailNet"]
