"""ONNX export of a trained CoarseNet (opset 17, dynamic batch), checked against torch, with a model card."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from engines.models.coarsenet import OUTPUT_NAMES, CoarseNet, CoarseNetConfig
from engines.onnx_file import POSE_ANCHOR_KEY
from tracker.core.crop import POSE_ANCHOR_HEAD_M
from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

OPSET = 17


def load_checkpoint(path: Path) -> tuple[CoarseNet, dict]:
    """The model of a training checkpoint (eval mode) and the checkpoint's config dict."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    mc = ck["config"]["model"]
    model = CoarseNet(CoarseNetConfig(in_channels=mc["in_channels"], input_size_px=mc["input_size_px"],
                                      num_identity=mc["num_identity"], width=mc["width"]))  # fmt: skip
    model.load_state_dict(ck["model"])
    return model.eval(), ck


def _write_pose_anchor(path: Path) -> None:
    """Records in the file's metadata which head-frame point the offset and scale outputs refer to, so the
    runtime decodes this model's pose as it was trained (engines.onnx_file.pose_anchor_of)."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {POSE_ANCHOR_KEY: ",".join(f"{v:.6g}" for v in POSE_ANCHOR_HEAD_M)})
    onnx.save(model, str(path))


def export_checked(model: torch.nn.Module, input_shape: tuple[int, ...], out: Path, input_name: str,
                   output_names: tuple[str, ...], atol: float = 1e-4, finish=None) -> float:  # fmt: skip
    """Exports an eval-mode network to ONNX (opset :data:`OPSET`, dynamic batch) and checks it against torch.

    Args:
        model: The network in eval mode; its forward returns a tensor (one output) or a dict of ``output_names``.
        input_shape: (B, ...) of the random example input.
        out: Destination; written only if the check passes.
        input_name, output_names: ONNX tensor names.
        atol: Largest allowed abs difference between ONNX Runtime's and torch's outputs.
        finish: Called with the temporary file's path before the check (e.g. to add metadata).

    Returns:
        The largest abs difference on a random batch.

    Raises:
        EngineError: if the outputs differ by more than ``atol``.
    """
    import onnxruntime as ort

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    axes = {n: {0: "batch"} for n in (input_name, *output_names)}
    torch.onnx.export(model, (torch.rand(*input_shape),), tmp, input_names=[input_name], output_names=list(output_names),
                      opset_version=OPSET, dynamic_axes=axes, dynamo=False)  # fmt: skip
    if finish is not None:
        finish(tmp)
    xs = torch.rand(3, *input_shape[1:])
    with torch.no_grad():
        ref = model(xs)
    ref = ref if isinstance(ref, dict) else {output_names[0]: ref}
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = dict(zip(output_names, sess.run(list(output_names), {input_name: xs.numpy()}), strict=True))
    diff = max(float(np.abs(got[n] - ref[n].numpy()).max()) for n in output_names)
    if diff > atol:
        tmp.unlink()
        raise EngineError(f"ONNX export of {out.name} differs from torch by {diff:.2e} (> {atol:.0e}); not written")
    tmp.replace(out)
    log.info("exported %s (%.2f MB), max |onnx - torch| = %.2e", out, out.stat().st_size / 1e6, diff)
    return diff


def export_onnx(model: CoarseNet, out: Path, atol: float = 1e-4) -> float:
    """Writes CoarseNet's ONNX file (with its pose anchor) and returns the largest abs difference to torch on
    a random batch (:func:`export_checked`)."""
    cfg = model.config
    return export_checked(model, (2, cfg.in_channels, cfg.input_size_px, cfg.input_size_px), out, "image", OUTPUT_NAMES,
                          atol, finish=_write_pose_anchor)  # fmt: skip


def write_model_card(path: Path, onnx_path: Path, ck: dict, metrics: dict, extra: dict | None = None) -> None:
    """``MODEL_CARD.md`` beside the weights: data and licences, losses, training time and hardware, metrics."""
    import platform

    cfg = ck["config"]
    hours = ck.get("elapsed_s", 0.0) / 3600
    lines = [
        f"# {cfg['name']} — CoarseNet face-model regressor",
        "",
        f"File: `{onnx_path.name}` ({onnx_path.stat().st_size / 1e6:.2f} MB), ONNX opset {OPSET}, dynamic batch.",
        "Input `image`: (B,3,128,128) float32 RGB in [0,1], a perspective face crop (tracker/core/crop.py).",
        f"Outputs: {', '.join(OUTPUT_NAMES)} (engines/models/coarsenet.py).",
        "Pose: `offset` and `log_scale` place the head-frame point "
        f"{tuple(round(float(v), 4) for v in POSE_ANCHOR_HEAD_M)} m (tracker/core/crop.py POSE_ANCHOR_HEAD_M; ONNX "
        "metadata `pose_anchor_head_m`), not the head origin.",
        "",
        "## Training data",
        "- Synthetic crops rendered from the ICT Face Model Light (MIT, USC ICT) with procedural skin albedo,",
        "  random identities, the full ARKit expression range, yaw up to ±90°, SH lighting, procedural",
        "  backgrounds, occluders, blur, noise and JPEG (engines/train/synth.py). Exact labels.",
        "- Where a texture bank was used: skin textures unwrapped from fits to real faces in the project's",
        "  development data (identity photo sets, frames of HDTF-, VoxCeleb- and LivePortrait-derived clips;",
        "  textures made from the AFW/HELEN evaluation images are excluded, engines/train/synth.py",
        "  EVAL_SOURCES); research use only — the terms of the original datasets apply to this model.",
        f"- Data config: `{json.dumps(cfg['data'])}`",
        *([f"- Real frames labelled by the MediaPipe Face Landmarker (landmark term E_lan, engines/train/real.py; "
           f"datasets {cfg['train']['real_datasets']}): frames of the development clips (LivePortrait, SMIRK, "
           "SadTalker/HDTF, video-retalking, TPSMM/VoxCeleb, AniPortrait examples) and the identity photo sets "
           "(face-api.js, dlib, deepface examples); research use only — the terms of the original footage and "
           "datasets apply to this model. The AFW/HELEN evaluation images are never used."]
          if cfg["train"].get("real_datasets") else []),
        *([f"- Pairs of nearby frames (1-2 apart) of the same development clips, cut with one crop, with OpenCV DIS "
           f"optical flow between them and teacher landmarks on both (engines/train/pairs.py; datasets "
           f"{cfg['train']['pair_datasets']}); same terms of use."]
          if cfg["train"].get("pair_datasets") else []),
        "",
        "## Losses",
        "- Synthetic crops: projected landmark and dense-vertex error in crop pixels, head-frame shape error (mm),",
        ("  expression cross-entropy on the logits, weighted per channel," if cfg["loss"].get("expression_loss") == "bce"
         else "  expression L1,") + " rotation (Frobenius), crop offset and log-scale L1, identity and lighting",
        "  regularisers, confidence BCE.",
        *(["- Real crops: E_lan (robust teacher-landmark error, crop px) and E_reg (identity prior)"
           + ("; E_exp, the expressions (as ARKit) against the teacher's 52 blendshape scores."
              if cfg["loss"].get("real_expression", 0.0) > 0 else ".")]
          if cfg["train"].get("real_datasets") else []),
        *(["- Real frame pairs: E_flow (projected surface motion against optical flow), E_same (identity agreement),",
           "  E_pho (shading against the image at visible surface points), E_lan on both frames."]
          if cfg["train"].get("pair_datasets") else []),
        f"- Definitions: engines/train/losses.py, docs/training.md. Weights: `{json.dumps(cfg['loss'])}`",
        "",
        "## Training",
        f"- {ck['epoch']} epochs, {ck['step']} steps, batch {cfg['train']['batch_size']}, AdamW lr {cfg['train']['lr']}, cosine schedule.",
        f"- Wall time {hours:.2f} h on {platform.processor() or platform.machine()} CPU "
        f"({cfg['train']['threads']} threads), no GPU.",
        "",
        "## Metrics",
    ]
    lines += [f"- `{k}`: {v:.4f}" if isinstance(v, float) else f"- `{k}`: {v}" for k, v in sorted(metrics.items())]
    for k, v in (extra or {}).items():
        lines.append(f"- {k}: {v}")
    lines += ["", f"Regenerate: the data and the stages in docs/training.md, then `facetrack train export --config "
              f"{cfg['name']}`.", ""]  # fmt: skip
    path.write_text("\n".join(lines))
