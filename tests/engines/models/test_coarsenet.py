import torch

from engines.models.coarsenet import OUTPUT_NAMES, CoarseNet, CoarseNetConfig


def test_outputs_and_ranges():
    net = CoarseNet(CoarseNetConfig(num_identity=12)).eval()
    with torch.no_grad():
        out = net(torch.rand(3, 3, 128, 128))
    assert tuple(out) == OUTPUT_NAMES
    sizes = {"identity": 12, "expression": 53, "rotation6d": 6, "offset": 2, "log_scale": 1, "lighting": 27,
             "confidence": 1}
    assert {k: v.shape for k, v in out.items()} == {k: (3, n) for k, n in sizes.items()}
    assert out["expression"].min() >= 0 and out["expression"].max() <= 1
    # the untrained network starts at the prior: frontal rotation, neutral white light
    torch.testing.assert_close(out["rotation6d"].mean(0), torch.tensor([1.0, 0, 0, 0, 1.0, 0]), atol=0.1, rtol=0)


def test_rgbd_variant_is_a_flag_away():
    net = CoarseNet(CoarseNetConfig(in_channels=4)).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 4, 128, 128))
    assert out["identity"].shape == (2, 40)
