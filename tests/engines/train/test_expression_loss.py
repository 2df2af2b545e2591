"""The expression loss must not collapse the expression head (issue 13).

v1h's head was trained with an L1 loss on sparse expression labels through a sigmoid: L1 pulls each channel to
the labels' median (0) and the sigmoid's slope vanishes there, so blinks stayed at 0.047 and browInnerUp at
0.000. These tests would have caught it: at a saturated logit the ``bce`` term still pushes towards the labels'
mean, and a tiny network trained on a few crops learns a blink that only its eye region shows.
"""

import numpy as np
import torch

from engines.models.coarsenet import OUTPUT_NAMES, CoarseNet, CoarseNetConfig
from engines.train.losses import (
    expression_channel_weights,
    expression_error,
    soft_bce_excess,
    teacher_channel_weights,
)
from engines.train.real import ARKIT_MIRROR
from engines.train.trainer import flip_augment
from tracker.core.face_model.arkit import ARKIT_NAMES, ICT_EXPRESSION_NAMES, NUM_ICT

BLINK = ICT_EXPRESSION_NAMES.index("eyeBlink_L")


def _sparse_labels(n: int, rng: np.random.Generator) -> torch.Tensor:
    """(n,53) labels like the synthetic ones: mostly 0, a blink in a fifth of the samples."""
    y = np.zeros((n, NUM_ICT), np.float32)
    y[rng.random(n) < 0.2, BLINK] = 1.0
    return torch.from_numpy(y)


def test_bce_pushes_a_saturated_channel_towards_the_label_mean_where_l1_pushes_it_to_zero():
    rng = np.random.default_rng(0)
    y = _sparse_labels(200, rng)
    weights = torch.from_numpy(expression_channel_weights())
    grads = {}
    for kind in ("l1", "bce"):
        logit = torch.full((200, NUM_ICT), -8.0, requires_grad=True)  # browInnerUp's v1h logits were -5 to -10
        pred = {"expression": torch.sigmoid(logit), "expression_logit": logit}
        expression_error(pred, y, kind, weights).mean().backward()
        grads[kind] = float(logit.grad[:, BLINK].sum())
    # Gradient descent moves the logit by -grad: L1 drives the blink further down (the collapse), BCE up, and
    # with a pull ~ (mean label - p) that the sigmoid's slope (3e-4 at -8) does not damp.
    assert grads["l1"] > 0
    assert grads["bce"] < 0
    assert abs(grads["bce"]) > 500 * abs(grads["l1"])


def test_soft_bce_excess_is_zero_at_the_target_and_matches_without_logits():
    y = torch.tensor([0.0, 0.3, 1.0, 0.5])
    p = y.clamp(1e-6, 1 - 1e-6)
    torch.testing.assert_close(soft_bce_excess(p, y), torch.zeros(4), atol=1e-4, rtol=0)
    p2 = torch.tensor([0.2, 0.6, 0.7, 0.1])
    torch.testing.assert_close(soft_bce_excess(p2, y), soft_bce_excess(p2, y, torch.logit(p2)))
    assert (soft_bce_excess(p2, y) > 0).all()


def test_channel_weights_favour_the_eyes():
    w = expression_channel_weights()
    assert w.shape == (NUM_ICT,) and abs(float(w.mean()) - 1.0) < 1e-5
    assert w[BLINK] == w.max() and w[ICT_EXPRESSION_NAMES.index("cheekPuff_L")] < 1.0
    t = teacher_channel_weights()
    assert t[ARKIT_NAMES.index("tongueOut")] == 0.0 and t[ARKIT_NAMES.index("eyeBlinkLeft")] == 1.0
    assert t[ARKIT_NAMES.index("cheekPuff")] < 0.5


def _tiny_net() -> CoarseNet:
    torch.manual_seed(0)
    net = CoarseNet(CoarseNetConfig(input_size_px=32, num_identity=4, width=0.5, stem_channels=8, stages=(16, 32)))
    with torch.no_grad():  # start where v1h's brows were: saturated far below the labels
        net.head.bias[4 : 4 + NUM_ICT].fill_(-8.0)
    return net


def test_tiny_training_makes_the_blink_follow_the_eyes():
    """48 crops whose 'eye' patch is dark when the blink label is 1; 60 steps of the ``bce`` term move the
    saturated blink channel to follow it (the v1h head's outputs varied by < 0.02)."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    y = _sparse_labels(48, rng)
    y[:12, BLINK] = 1.0  # at least a quarter blinks
    img = torch.from_numpy(rng.uniform(0.4, 0.9, (48, 3, 32, 32)).astype(np.float32))
    img[y[:, BLINK] > 0.5, :, 8:14, 6:14] = 0.05
    net = _tiny_net().train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    weights = torch.from_numpy(expression_channel_weights())
    for _ in range(60):
        out = net(img)
        assert "expression_logit" in out
        loss = expression_error(out, y, "bce", weights).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        out = net(img)
    assert tuple(out) == OUTPUT_NAMES  # eval mode (and the ONNX export) has no logits output
    blink = out["expression"][:, BLINK].numpy()
    assert blink.std() > 0.15  # v1h: 0.012 (truth 0.19)
    assert np.corrcoef(blink, y[:, BLINK].numpy())[0, 1] > 0.95


def test_mirroring_swaps_left_and_right_teacher_blendshapes():
    assert (ARKIT_MIRROR[ARKIT_MIRROR] == np.arange(len(ARKIT_NAMES))).all()
    left, right, jaw = (ARKIT_NAMES.index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen"))
    assert ARKIT_MIRROR[left] == right and ARKIT_MIRROR[jaw] == jaw
    shapes = torch.zeros(64, len(ARKIT_NAMES))
    shapes[:, left] = 1.0
    labels = {"points": torch.zeros(64, 468, 2), "blendshapes": shapes}
    mirror = np.arange(468)
    _, out = flip_augment(torch.zeros(64, 3, 8, 8), labels, np.random.default_rng(3), mirror)
    flipped = out["points"][:, 0, 0] == 7.0  # x -> (N-1) - x marks the mirrored samples
    assert 0 < int(flipped.sum()) < 64
    assert (out["blendshapes"][flipped, right] == 1.0).all() and (out["blendshapes"][flipped, left] == 0.0).all()
    assert (out["blendshapes"][~flipped, left] == 1.0).all()
