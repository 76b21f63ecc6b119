"""Synthetic data CLI.

python -m train.synth dataset --out DIR --n N --seed S --workers W     write (or resume) a dataset
python -m train.synth dataset ... --split test                        only the shards of one split
python -m train.synth preview --dataset DIR --out PNG [--rows 12]     contact sheet incl. attacks
python -m train.synth identities --out PNG [--n 64]                   64 random identities, frontal
python -m train.synth bench [--n 240] [--workers 2]                   generator frames/s and memory
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

from train.synth.dataset_index import SPLITS, DatasetError, DatasetIndex
from train.synth.makehuman import AssetsMissingError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {value}")
    return value


def _relief_factor(text: str) -> float:
    value = float(text)
    if not 0.5 <= value <= 2.0:
        raise argparse.ArgumentTypeError(f"must be within [0.5, 2], got {value}")
    return value


def _add_generator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=_positive, default=2)
    p.add_argument("--shard-size", type=_positive, default=64)
    p.add_argument("--attack-share", type=_share, default=0.15)
    p.add_argument("--height", type=_positive, default=480)
    p.add_argument("--width", type=_positive, default=640)
    p.add_argument(
        "--relief-scale",
        type=_relief_factor,
        nargs=2,
        default=(1.0, 1.0),
        metavar=("LO", "HI"),
        help="stretch each identity's relief by a factor drawn log-uniformly from [LO, HI] (1 1: none)",
    )
    p.add_argument("--real-backdrop-share", type=_share, default=0.0,
                   help="share of rooms and attack-picture backdrops cut from faceless CC0 photographs")
    p.add_argument("--near-share", type=_share, default=0.0,
                   help="share of bona fide frames drawn at 300-550 mm (a person standing at a door camera) "
                        "instead of across the whole 300-1,200 mm")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train.synth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dataset", help="write or resume a sharded dataset")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=_positive, required=True)
    p.add_argument(
        "--split",
        choices=SPLITS,
        help="write only shards of this split (test: shards 0, 10, 20...), identity-disjoint from the "
        "other splits of any dataset with the same --seed; e.g. a larger test set (make data-test)",
    )
    _add_generator_args(p)
    p = sub.add_parser("preview", help="contact sheet of a dataset")
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rows", type=_positive, default=12)
    p = sub.add_parser("identities", help="grid of random identities")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=_positive, default=64)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("bench", help="generator throughput")
    p.add_argument("--n", type=_positive, default=256)
    _add_generator_args(p)
    return parser


def _config(args):
    from train.synth.generator import GeneratorConfig

    lo, hi = args.relief_scale
    if lo > hi:
        sys.exit(f"--relief-scale {lo} {hi}: LO must not exceed HI; give e.g. --relief-scale 0.8 1.25")
    return GeneratorConfig(
        height=args.height, width=args.width, attack_share=args.attack_share, relief_scale=(lo, hi),
        real_backdrop_share=args.real_backdrop_share, near_share=args.near_share,
    )


def cmd_dataset(args) -> None:
    from train.synth.dataset import DatasetPlan, write_dataset

    plan = DatasetPlan(args.out, args.n, args.seed, args.shard_size, _config(args), args.split)
    report = write_dataset(plan, args.workers)
    counts = DatasetIndex.load(args.out).counts()
    print(
        f"{args.out}: {report.generated} frames generated, {report.skipped} kept, "
        f"{report.frames_per_second:.1f} frames/s; counts {counts}"
    )


def cmd_preview(args) -> None:
    from train.synth.preview import contact_sheet, save_rgb

    index = DatasetIndex.load(args.dataset)
    chosen, attacks = [], []
    for reader in index.readers():
        for i, label in enumerate(reader.labels):
            (attacks if label != "bona_fide" else chosen).append((reader, i))
        if len(chosen) >= args.rows and len(attacks) >= args.rows // 3:
            break
    n_att = min(len(attacks), max(args.rows // 3, 1))
    picks = attacks[:n_att] + chosen[: args.rows - n_att]
    save_rgb(args.out, contact_sheet([r.sample(i) for r, i in picks]))
    print(f"wrote {args.out} ({len(picks)} rows, {n_att} attacks)")


def cmd_identities(args) -> None:
    from train.synth.camera import sample_camera
    from train.synth.face_render import make_identity
    from train.synth.generator import GeneratorConfig, render_bona_fide, sample_pose
    from train.synth.preview import identity_grid, save_rgb
    from train.synth.sensor import SensorParams, apply_sensor

    cfg = GeneratorConfig(height=360, width=360, yaw_deg=25, pitch_deg=10, roll_deg=5, frontal_share=1.0)
    clean = SensorParams(1.0, np.ones(3, np.float32), 0.0, 0, 0.002, 0.0, 2.2, 0)
    frames = []
    for k in range(args.n):
        rng = np.random.default_rng([args.seed, k, 7])
        camera = sample_camera(rng, (cfg.height, cfg.width), (40.0, 40.0))
        pose = sample_pose(cfg, camera, rng, distance=camera.K[0, 0] * 0.8)
        pose = type(pose)(pose.yaw, pose.pitch, pose.roll, pose.pivot_cam + np.array([0, 0, 0.0]))
        img, layer, _ = render_bona_fide(cfg, make_identity(k, rng), camera, rng, pose)
        x0, y0, x1, y1 = (*layer.landmarks_2d.min(0), *layer.landmarks_2d.max(0))
        c, half = np.array([(x0 + x1) / 2, (y0 + y1) / 2 - 0.1 * (y1 - y0)]), 0.8 * max(x1 - x0, y1 - y0)
        rgb = apply_sensor(img, clean, rng)
        ya, yb = int(max(c[1] - half, 0)), int(min(c[1] + half, cfg.height))
        xa, xb = int(max(c[0] - half, 0)), int(min(c[0] + half, cfg.width))
        frames.append(rgb[ya:yb, xa:xb])
    save_rgb(args.out, identity_grid(frames))
    print(f"wrote {args.out} ({args.n} identities)")


def cmd_bench(args) -> None:
    from train.synth.dataset import DatasetPlan, write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        warm = DatasetPlan(Path(tmp) / "warm", 2, args.seed, 2, _config(args))
        write_dataset(warm, 1, progress=False)  # compile numba kernels and build the morph cache first
        plan = DatasetPlan(Path(tmp) / "bench", args.n, args.seed, args.shard_size, _config(args))
        report = write_dataset(plan, args.workers, progress=False)
        size_mb = sum(p.stat().st_size for p in plan.out.glob("shard-*.npz")) / 1e6
    print(
        f"generator: {report.frames_per_second:.1f} frames/s with {args.workers} workers at "
        f"{args.width}x{args.height}, shading, sensor and shard writing included "
        f"({report.generated} frames in {report.seconds:.1f} s)"
    )
    idle = args.workers * 1000 / max(report.cpu_ms_per_frame, 1e-9)
    print(  # the wall-clock rate drops when other jobs share the cores; the CPU cost per frame hardly does
        f"CPU per frame: {report.cpu_ms_per_frame:.1f} ms in the workers, so {idle:.1f} frames/s "
        f"on {args.workers} otherwise idle cores"
    )
    print(
        f"peak RSS per worker: {report.peak_rss_mb_per_worker:.0f} MB; "
        f"{size_mb / report.generated * 1000:.0f} kB per frame on disk"
    )


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        {"dataset": cmd_dataset, "preview": cmd_preview, "identities": cmd_identities, "bench": cmd_bench}[
            args.command
        ](args)
    except (DatasetError, AssetsMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
