"""Training continues from an exported ONNX file: the folded batch norms are rebuilt exactly."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from engines.models.coarsenet import OUTPUT_NAMES, CoarseNet, CoarseNetConfig
from engines.train.export import export_onnx
from engines.train.warm_start import model_from_onnx
from tracker.core.errors import EngineError

CONFIG = CoarseNetConfig(num_identity=10, width=0.5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small CoarseNet with non-trivial batch-norm statistics, exported (its batch norms get folded)."""
    torch.manual_seed(0)
    model = CoarseNet(CONFIG)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # move the running statistics away from (0, 1)
            model(torch.rand(16, 3, 128, 128) * 0.8 + 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.head.weight.normal_(0, 0.05)
    model.eval()
    path = tmp_path_factory.mktemp("warm") / "net.onnx"
    export_onnx(model, path)
    return model, path


def test_onnx_weights_reproduce_the_exported_function(exported):
    original, path = exported
    calibration = torch.rand(32, 3, 128, 128)
    model = model_from_onnx(path, CONFIG, calibration)
    x = torch.rand(4, 3, 128, 128)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip(OUTPUT_NAMES, sess.run(list(OUTPUT_NAMES), {"image": x.numpy()}), strict=True))
    with torch.no_grad():
        ref, orig = model(x), original(x)
    for name in OUTPUT_NAMES:
        np.testing.assert_allclose(ref[name].numpy(), got[name], atol=1e-5, rtol=1e-4, err_msg=name)
        np.testing.assert_allclose(ref[name].numpy(), orig[name].numpy(), atol=1e-5, rtol=1e-4, err_msg=name)


def test_rebuilt_batch_norms_behave_alike_in_training_mode(exported):
    """In train mode the batch statistics of images like the calibration set normalise to the same range,
    so the first training steps start from the exported function, not from a rescaled one."""
    _, path = exported
    gen = torch.Generator().manual_seed(1)
    model = model_from_onnx(path, CONFIG, torch.rand(64, 3, 128, 128, generator=gen))
    x = torch.rand(64, 3, 128, 128, generator=gen)
    with torch.no_grad():
        eval_out = model.eval()(x)
        train_out = model.train()(x)
    for name in ("identity", "rotation6d", "log_scale"):
        scale = float(eval_out[name].abs().mean()) + 1e-3
        assert float((train_out[name] - eval_out[name]).abs().mean()) < 0.05 * scale, name


def test_a_file_of_another_architecture_is_refused(exported, tmp_path):
    _, path = exported
    with pytest.raises(EngineError, match="expects"):
        model_from_onnx(path, CoarseNetConfig(num_identity=10, width=1.0), torch.rand(4, 3, 128, 128))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(EngineError, match="not a readable ONNX"):
        model_from_onnx(bad, CONFIG, torch.rand(4, 3, 128, 128))
