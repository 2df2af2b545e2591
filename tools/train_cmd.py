"""``facetrack train synth|real|pairs|detail-data|detail|rgbd|run|export``: synthesise data, extract teacher-labelled real crops and frame
pairs, train CoarseNet, the detail networks and CoarseNet-D (resumable), export ONNX + model card."""

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
    v.add_argument("--crop-size", type=int, metavar="PX",
                   help="crop side (default: the network's input); larger crops feed `train detail-data --synth`, "
                        "whose eye and mouth patches want the resolution")  # fmt: skip
    v.add_argument("--depth", action="store_true",
                   help="RGB-D crops for CoarseNet-D: depth through the D4xx sensor model, hands in front of some "
                        "faces, no no-face crops (use with --crop-size 64)")  # fmt: skip
    v.set_defaults(func=cmd_synth)

    v = verbs.add_parser("real", help="crop real frames (../shared/data videos and identity photos) with MediaPipe "
                                      "teacher landmarks into the data cache (resumes if interrupted)")  # fmt: skip
    v.add_argument("--data-name", default="real_v1", help="dataset name under the cache (default real_v1)")
    v.add_argument("--per-clip", type=int, default=40, help="frames per video, spread evenly (default 40)")
    v.add_argument("--jitter", type=int, default=4, help="jittered crops per face (default 4)")
    v.add_argument("--videos", type=Path, nargs="*", metavar="PATH",
                   help="video files or folders (default ../shared/data/videos)")  # fmt: skip
    v.add_argument("--identity", type=Path, help="photo sets <set>/<person>/<image> (default ../shared/data/identity)")
    v.add_argument("--no-identity", action="store_true", help="videos only")
    v.add_argument("--max-groups", type=int, default=0, help="only the first N groups (clips/people), for smoke runs")
    v.add_argument("--seed", type=int, default=0, help="jitter seed (default 0)")
    v.add_argument("--calibrate-box", action="store_true",
                   help="only measure the MediaPipe -> ICT-68 crop-box constants on renders and print them")  # fmt: skip
    add_json_option(v)
    v.set_defaults(func=cmd_real)

    v = verbs.add_parser("pairs", help="cut pairs of nearby video frames with one crop, with optical flow and teacher "
                                       "landmarks, for E_flow / E_same / E_pho (resumes if interrupted)")  # fmt: skip
    v.add_argument("--data-name", default="pairs_v1", help="dataset name under the cache (default pairs_v1)")
    v.add_argument("--per-clip", type=int, default=80, help="pairs per clip, spread evenly (default 80)")
    v.add_argument("--gaps", type=int, nargs="+", default=[1, 2], help="frame gaps drawn from (default 1 2)")
    v.add_argument("--videos", type=Path, nargs="*", metavar="PATH",
                   help="video files or folders (default ../shared/data/videos)")  # fmt: skip
    v.add_argument("--seed", type=int, default=0, help="jitter seed (default 0)")
    add_json_option(v)
    v.set_defaults(func=cmd_pairs)

    v = verbs.add_parser("detail-data", help="cut eye and mouth patches for the detail networks: every frame of "
                                             "real clips with MediaPipe's blendshapes, and synthetic crops with "
                                             "exact ones (resumes if interrupted)")  # fmt: skip
    v.add_argument("--data-name", default="detail_v1", help="dataset name under the cache (default detail_v1)")
    v.add_argument("--videos", type=Path, nargs="*", metavar="PATH", default=None,
                   help="clips or folders (default ../shared/data/videos_extra; never the developer videos/)")
    v.add_argument("--synth", nargs="*", default=[], metavar="NAME",
                   help="synthetic datasets under the cache (facetrack train synth) to add, e.g. synth_e1")
    add_json_option(v)
    v.set_defaults(func=cmd_detail_data)

    v = verbs.add_parser("detail", help="train the eye and mouth detail networks (resuming), or --export them")
    v.add_argument("--config", default="detail_v1", help="TOML path or name under engines/train/configs/ "
                                                          "(default detail_v1)")  # fmt: skip
    v.add_argument("--parts", nargs="+", choices=("eye", "mouth"), default=["eye", "mouth"])
    v.add_argument("--restart", action="store_true", help="ignore the last checkpoints")
    v.add_argument("--export", action="store_true",
                   help="export the best checkpoints to engines/weights/<part>net_v1.onnx instead of training")
    add_json_option(v)
    v.set_defaults(func=cmd_detail)

    v = verbs.add_parser("rgbd", help="train CoarseNet-D, the RGB-D rigid alignment (resuming), or --export it")
    v.add_argument("--config", default="coarsenet_d_v1", help="TOML path or name under engines/train/configs/ "
                                                               "(default coarsenet_d_v1)")  # fmt: skip
    v.add_argument("--restart", action="store_true", help="ignore the last checkpoint")
    v.add_argument("--export", action="store_true",
                   help="export the best checkpoint to engines/weights/coarsenet_d_v1.onnx instead of training")
    add_json_option(v)
    v.set_defaults(func=cmd_rgbd)

    v = verbs.add_parser("run", help="train (resuming from the last checkpoint unless --restart)")
    common(v)
    v.add_argument("--data", type=Path, nargs="*", help="dataset folders (default: the config's)")
    v.add_argument("--restart", action="store_true", help="ignore the last checkpoint")
    v.add_argument("--max-minutes", type=float, help="stop after this long (resume later)")
    v.add_argument("--nproc", type=int, default=1,
                   help="train on N processes with DDP, started by torchrun (each takes 1/N of every batch; "
                        "default 1)")  # fmt: skip
    v.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu (gloo between processes) or cuda (NCCL, one GPU per process; default cpu)")  # fmt: skip
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
    from tracker.core.assets import cache_dir
    from tracker.render import Renderer

    cfg = load_config(args.config)
    bank = args.bank or (cache_dir() / "texture_bank")
    name = args.data_name or cfg.data.name
    spec = SynthSpec(num_identity=cfg.model.num_identity, max_yaw_deg=cfg.data.max_yaw_deg,
                     negative_fraction=0.0 if args.depth else cfg.data.negative_fraction,
                     bank_fraction=cfg.data.bank_fraction if bank.is_dir() else 0.0,
                     crop_size_px=args.crop_size or cfg.model.input_size_px, depth=args.depth)  # fmt: skip
    out = generate(cfg.data_dir.parent / name, spec, args.samples or cfg.data.num_samples, cfg.data.shard_size,
                   cfg.data.seed if args.seed is None else args.seed, Renderer, args.workers or cfg.data.workers,
                   bank if bank.is_dir() else None)  # fmt: skip
    print(f"dataset ready: {out} ({json.dumps(dataclasses.asdict(spec))})")
    return 0


def cmd_real(args) -> int:
    from engines.train.real import RealSpec, calibrate_teacher_box, extract_real, list_groups
    from tracker.core.assets import cache_dir

    if args.calibrate_box:
        from tracker.render import Renderer

        report = calibrate_teacher_box(Renderer, progress=True)
        print(json.dumps(report, indent=2))
        write_json(args.json, report)
        return 0
    groups = list_groups(args.videos, args.identity, include_identity=not args.no_identity)
    if args.max_groups > 0:
        groups = groups[: args.max_groups]
    out = cache_dir() / "train" / "data" / args.data_name
    meta = extract_real(out, groups, RealSpec(per_clip=args.per_clip, jitter=args.jitter, seed=args.seed))
    samples = sum(g.get("samples", 0) for g in meta["groups"].values())
    spf = meta["this_run"]["seconds_per_frame"]
    print(f"real dataset ready: {out} ({len(meta['groups'])} groups, {samples} crops"
          + (f"; {1000 * spf:.0f} ms per frame this run)" if spf else ")"))  # fmt: skip
    write_json(args.json, meta)
    return 0


def cmd_detail_data(args) -> int:
    from engines.train.detail_data import build, list_clips
    from engines.train.real import DEFAULT_DATA_ROOT
    from tracker.core.assets import cache_dir
    from tracker.core.errors import ConfigError

    clips = list_clips(args.videos if args.videos is not None else [DEFAULT_DATA_ROOT / "videos_extra"])
    data_root = cache_dir() / "train" / "data"
    synth = []
    for name in args.synth:
        shards = sorted((data_root / name).glob("shard_*.npz"))
        if not shards:
            raise ConfigError(f"synthetic dataset {name!r} has no shards under {data_root}; make it with "
                              "`facetrack train synth`")  # fmt: skip
        synth += shards
    out = data_root / args.data_name
    manifest = build(out, clips, synth)
    samples = {k: sum(v["samples"] for v in manifest["shards"].values() if v["exact"] == k) for k in (False, True)}
    print(f"detail dataset ready: {out} ({len(manifest['shards'])} shards, {samples[False]} real and "
          f"{samples[True]} synthetic samples)")
    write_json(args.json, manifest)
    return 0


def cmd_detail(args) -> int:
    import dataclasses
    import shutil

    from engines.catalog import WEIGHTS_DIR
    from engines.train.detail import DetailTrainConfig, DetailTrainer, export_onnx, part_data, split
    from tracker.core.assets import cache_dir

    cfg = DetailTrainConfig.load(args.config)
    run_dir = cache_dir() / "train" / "runs" / cfg.name
    if args.restart and run_dir.exists():
        shutil.rmtree(run_dir)
    report = {"config": dataclasses.asdict(cfg), "parts": {}}
    train_shards, val_shards, val_names = split(cache_dir() / "train" / "data" / cfg.data_name, cfg)
    report["validation_shards"] = val_names
    for part in args.parts:
        trainer = DetailTrainer(cfg, part, run_dir)
        if args.export:
            out = WEIGHTS_DIR / f"{part}net_v1.onnx"
            err = export_onnx(trainer, out)
            print(f"{part}net: {out} (max |onnx - torch| {err:.1e}; best epoch {trainer.best['epoch']})")
            report["parts"][part] = {"onnx": str(out), "best": trainer.best}
            continue
        train, val = part_data(train_shards, part), part_data(val_shards, part)
        print(f"{part}net: {len(train)} training and {len(val)} validation patches; runs/{cfg.name}/")
        best = trainer.train(train, val)
        print(f"{part}net best epoch {best.get('epoch')}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in best.items() if k.startswith(("val_loss", "r_", "synth_blink"))))
        report["parts"][part] = {"best": best, "curves": str(run_dir / f"{part}_curves.png")}
    write_json(args.json, report)
    return 0


def cmd_rgbd(args) -> int:
    import dataclasses
    import shutil

    from engines.catalog import WEIGHTS_DIR
    from engines.train.rgbd import RgbdTrainConfig, RgbdTrainer, export_onnx, load_rgbd
    from engines.train.synth import load_shards
    from tracker.core.assets import cache_dir
    from tracker.core.errors import ConfigError

    cfg = RgbdTrainConfig.load(args.config)
    run_dir = cache_dir() / "train" / "runs" / cfg.name
    if args.restart and run_dir.exists():
        shutil.rmtree(run_dir)
    trainer = RgbdTrainer(cfg, run_dir)
    report: dict = {"config": dataclasses.asdict(cfg)}
    if args.export:
        out = WEIGHTS_DIR / "coarsenet_d_v1.onnx"
        err = export_onnx(trainer, out)
        print(f"coarsenet-d: {out} (max |onnx - torch| {err:.1e}; best epoch {trainer.best['epoch']})")
        report.update(onnx=str(out), best=trainer.best)
    else:
        data_dir = cache_dir() / "train" / "data" / cfg.data_name
        shards = load_shards(data_dir)
        if len(shards) <= cfg.val_shards:
            raise ConfigError(f"{data_dir} has {len(shards)} shards; make more with "
                              f"`facetrack train synth --depth --crop-size 64 --data-name {cfg.data_name}`")  # fmt: skip
        val, train = load_rgbd(shards[: cfg.val_shards]), load_rgbd(shards[cfg.val_shards :])
        print(f"coarsenet-d: {len(train)} training and {len(val)} validation crops; runs/{cfg.name}/")
        best = trainer.train(train, val)
        print(f"coarsenet-d best epoch {best.get('epoch')}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in best.items() if k.startswith("val_")))  # fmt: skip
        report.update(best=best, curves=str(run_dir / "curves.png"))
    write_json(args.json, report)
    return 0


def cmd_pairs(args) -> int:
    from engines.train.pairs import PairSpec, extract_pairs
    from tracker.core.assets import cache_dir

    out = cache_dir() / "train" / "data" / args.data_name
    meta = extract_pairs(out, args.videos, PairSpec(pairs_per_clip=args.per_clip, gaps=tuple(args.gaps), seed=args.seed))
    pairs = sum(g.get("pairs", 0) for g in meta["groups"].values())
    print(f"pair dataset ready: {out} ({len(meta['groups'])} clip groups, {pairs} pairs)")
    write_json(args.json, meta)
    return 0


def torchrun_command(args, python: str | None = None) -> list[str]:
    """The torchrun command that runs this `train run` on ``args.nproc`` local processes (loopback only)."""
    import sys

    cmd = [python or sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "tools.cli", "train", "run", "--device", args.device]  # fmt: skip
    if args.config:
        cmd += ["--config", str(args.config)]
    if args.data:
        cmd += ["--data", *map(str, args.data)]
    if args.restart:
        cmd.append("--restart")
    if args.max_minutes is not None:
        cmd += ["--max-minutes", str(args.max_minutes)]
    if args.json:
        cmd += ["--json", str(args.json)]
    return cmd


def cmd_run(args) -> int:
    import dataclasses
    import os
    import subprocess

    from tracker.core.errors import ConfigError

    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        # Gloo picks its interface from the host name; keep every socket on loopback (one machine).
        env = {"GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1", **os.environ}
        return subprocess.run(torchrun_command(args), env=env, check=False).returncode

    from engines.train import distributed
    from engines.train.config import load_config
    from engines.train.trainer import train

    cfg = load_config(args.config)
    if args.max_minutes is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_minutes=args.max_minutes))
    metrics = train(cfg, args.data or None, resume=not args.restart, device=args.device)
    ctx = distributed.context_from_env(args.device)
    distributed.shutdown(ctx)
    if ctx.is_main:
        print(json.dumps(metrics, indent=2))
        write_json(args.json, metrics)
    return 0


def cmd_export(args) -> int:
    from engines.train.config import load_config
    from engines.train.export import export_onnx, load_checkpoint, write_model_card
    from tracker.tracking.regressor import WEIGHTS_DIR

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
