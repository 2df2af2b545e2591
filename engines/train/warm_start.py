"""A trainable CoarseNet from an exported ONNX file, so training can continue from the shipped weights.

Training checkpoints live in the user cache and are gone on a new machine; the committed
``engines/weights/coarsenet_v1.onnx`` is not. The exporter folds each batch norm into its convolution
(W' = W * g / s, b' = beta - mean * g / s), so the ONNX holds one weight and one bias per convolution.
Loading puts W' into the convolution and rebuilds a batch norm that is exact in eval mode and behaves like
the original in train mode: its running statistics are the mean mu and variance var of W'x measured on
calibration images, with gamma = sqrt(var + eps) and beta = mu + b', so that

* eval: (W'x - mu) / sqrt(var + eps) * gamma + beta = W'x + b' (the ONNX's function, exactly), and
* train: batch statistics close to (mu, var) normalise W'x back to the same range, so the first training
  steps start from the shipped function instead of a rescaled one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engines.models.coarsenet import CoarseNet, CoarseNetConfig
from tracker.core.errors import EngineError

log = logging.getLogger(__name__)


def _onnx_tensors(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of each Conv node in graph order, and the final Gemm's (weight, bias)."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # onnx raises several types for a corrupt file
        raise EngineError(f"{path}: not a readable ONNX file ({exc}); re-export it with `facetrack train export`") from exc
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs, gemm = [], None
    for node in graph.node:
        if node.op_type == "Conv":
            if len(node.input) != 3:
                raise EngineError(f"{path}: a Conv without a folded bias ({node.name}); not a CoarseNet export")
            convs.append((init[node.input[1]], init[node.input[2]]))
        elif node.op_type == "Gemm":
            gemm = (init[node.input[1]], init[node.input[2]])
    if gemm is None:
        raise EngineError(f"{path}: no Gemm head; not a CoarseNet export")
    return convs, gemm


def _conv_bn_pairs(model: CoarseNet) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """The model's (conv, batch norm) pairs in forward order, the order the exporter writes Conv nodes."""
    mods = list(model.modules())
    return [(m, mods[i + 1]) for i, m in enumerate(mods) if isinstance(m, nn.Conv2d)]


def model_from_onnx(path: Path, config: CoarseNetConfig, calibration: torch.Tensor) -> CoarseNet:
    """A CoarseNet of ``config`` carrying the weights of the exported ``path``.

    Args:
        path: ONNX file written by :func:`engines.train.export.export_onnx`.
        config: The architecture it was exported from (checked against the file's tensor shapes).
        calibration: (B,C,H,W) float32 training images for the batch-norm statistics (B >= 64 advised).

    Returns:
        The model in eval mode; its outputs equal ONNX Runtime's on the same input (to float rounding).

    Raises:
        EngineError: if the file is unreadable or its shapes do not fit ``config``.
    """
    convs, (head_w, head_b) = _onnx_tensors(Path(path))
    model = CoarseNet(config)
    pairs = _conv_bn_pairs(model)
    if len(pairs) != len(convs):
        raise EngineError(f"{path}: {len(convs)} convolutions, the configured CoarseNet has {len(pairs)}")
    with torch.no_grad():
        for (conv, bn), (w, b) in zip(pairs, convs, strict=True):
            if tuple(conv.weight.shape) != w.shape:
                raise EngineError(f"{path}: conv weight {w.shape}, the configured CoarseNet expects {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            # Identity batch norm carrying the folded bias, so a forward pass reproduces the ONNX function.
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(np.array(b)))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        if tuple(model.head.weight.shape) != head_w.shape:
            raise EngineError(f"{path}: head {head_w.shape}, the configured CoarseNet expects {tuple(model.head.weight.shape)}")
        model.head.weight.copy_(torch.from_numpy(np.array(head_w)))
        model.head.bias.copy_(torch.from_numpy(np.array(head_b)))

        # Measure W'x per channel with the exact (identity-BN) network, then rebuild each batch norm.
        stats: dict[nn.Conv2d, tuple[torch.Tensor, torch.Tensor]] = {}

        def hook(conv, _inputs, out):
            stats[conv] = (out.mean(dim=(0, 2, 3)), out.var(dim=(0, 2, 3), unbiased=False))

        handles = [conv.register_forward_hook(hook) for conv, _ in pairs]
        model.eval()
        try:
            model(calibration)
        finally:
            for h in handles:
                h.remove()
        for conv, bn in pairs:
            mu, var = stats[conv]
            folded_bias = bn.bias.clone()
            bn.running_mean.copy_(mu)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(mu + folded_bias)
    log.info("initialised CoarseNet from %s (%d convolutions, batch norm calibrated on %d images)",
             path, len(pairs), len(calibration))  # fmt: skip
    return model
