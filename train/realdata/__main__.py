"""CLI: python -m train.realdata {biwi,folder} SRC --out DIR [--shard-size 64] [--split SPLIT]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SOURCES = ("biwi", "folder")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train.realdata",
        description="Convert real RGB-D data into a facedepth dataset (identity-disjoint shards).",
    )
    parser.add_argument("source", choices=SOURCES, help="input format (see train/realdata/*.py)")
    parser.add_argument("src", type=Path, help="the source directory")
    parser.add_argument("--out", type=Path, required=True, help="dataset directory to write (or resume)")
    parser.add_argument("--shard-size", type=positive_int, default=64, help="frames per shard at most")
    parser.add_argument(
        "--split",
        choices=("train", "val", "test"),
        help="put every frame in this split (default: by identity, see convert.assign_splits)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # imported after parsing so usage errors are instant (cv2, numpy load slowly)
    from train.realdata.biwi import BiwiSource
    from train.realdata.common import RealDataError
    from train.realdata.convert import convert
    from train.realdata.folder import FolderSource

    try:
        source = {"biwi": BiwiSource, "folder": FolderSource}[args.source](args.src)
        result = convert(
            source,
            args.out,
            args.shard_size,
            args.split,
            progress=not args.quiet,
            command=["python", "-m", "train.realdata", *(sys.argv[1:] if argv is None else argv)],
        )
    except RealDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts = {split: sum(c.values()) for split, c in result.counts.items()}
    print(
        f"{result.out}: {result.n_frames} frames in {result.n_shards} shards "
        f"({result.n_resumed} already done); frames per split {counts}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
