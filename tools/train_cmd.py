"""``facetrack train synth|run|export``: synthesise data, train CoarseNet (resumable), export ONNX + model card."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tools.options import add_json_option, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="synthesise training data, train the regressor, export it to ONNX")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    def common(v):
        v.add_argument("--config", default=None, help="TOML config path or name under engines/train/configs/ "
                                                       "(default coarsenet_v1)")  # fmt: skip

    v = verbs.add_parser("synth", help="render labelled crops into the data cache (resumes if interrupted)")
    common(v)
    v.add_argument("--samples", type=int, help="number of samples (default: the config's)")
    v.add_argument("--data-name", help="dataset name under the cache (default: the config's)")
    v.add_argument("--bank", type=Path, help="texture bank folder (default: the user cache's, if any)")
    v.add_argument("--workers", type=int, help="worker processes (default: the config's)")
    v.add_argument("--seed", type=int, help="dataset seed (default: the config's); use a new one per extra dataset")
    v.set_defaults(func=cmd_synth)

    v = verbs.add_parser("run", help="train (resuming from the last checkpoint unless --restart)")
    common(v)
    v.add_argument("--data", type=Path, nargs="*", help="dataset folders (default: the config's)")
    v.add_argument("--restart", action="store_true", help="ignore the last checkpoint")
    v.add_argument("--max-minutes", type=float, help="stop after this long (resume later)")
    add_json_option(v)
    v.set_defaults(func=cmd_run)

    v = verbs.add_parser("export", help="export the best checkpoint to engines/weights/ with a model card")
    common(v)
    v.add_argument("--checkpoint", type=Path, help="default: the run's best.pt")
    v.add_argument("--out", type=Path, help="default: engines/weights/<name>.onnx")
    v.set_defaults(func=cmd_export)


def cmd_synth(args) -> int:
    import dataclasses

    from engines.train.config import load_config
    from engines.train.synth import SynthSpec, generate
    from tracker.assets import cache_dir

    cfg = load_config(args.config)
    bank = args.bank or (cache_dir() / "texture_bank")
    name = args.data_name or cfg.data.name
    spec = SynthSpec(num_identity=cfg.model.num_identity, max_yaw_deg=cfg.data.max_yaw_deg,
                     negative_fraction=cfg.data.negative_fraction,
                     bank_fraction=cfg.data.bank_fraction if bank.is_dir() else 0.0,
                     crop_size_px=cfg.model.input_size_px)  # fmt: skip
    out = generate(cfg.data_dir.parent / name, spec, args.samples or cfg.data.num_samples, cfg.data.shard_size,
                   cfg.data.seed if args.seed is None else args.seed, args.workers or cfg.data.workers,
                   bank if bank.is_dir() else None)  # fmt: skip
    print(f"dataset ready: {out} ({json.dumps(dataclasses.asdict(spec))})")
    return 0


def cmd_run(args) -> int:
    import dataclasses

    from engines.train.config import load_config
    from engines.train.trainer import train

    cfg = load_config(args.config)
    if args.max_minutes is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_minutes=args.max_minutes))
    metrics = train(cfg, args.data or None, resume=not args.restart)
    print(json.dumps(metrics, indent=2))
    write_json(args.json, metrics)
    return 0


def cmd_export(args) -> int:
    from engines.train.config import load_config
    from engines.train.export import export_onnx, load_checkpoint, write_model_card
    from tracker.regressor import WEIGHTS_DIR

    cfg = load_config(args.config)
    ck_path = args.checkpoint or cfg.run_dir / "best.pt"
    model, ck = load_checkpoint(ck_path)
    out = args.out or WEIGHTS_DIR / f"{cfg.name}.onnx"
    diff = export_onnx(model, out)
    metrics_path = cfg.run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    write_model_card(out.parent / "MODEL_CARD.md", out, ck, metrics, {"max |onnx - torch|": f"{diff:.2e}"})
    print(f"exported {out} (max |onnx - torch| = {diff:.2e}) and {out.parent / 'MODEL_CARD.md'}")
    return 0
