"""Convert a real RGB-D source into a facedepth dataset (shards + index.json), identity-disjoint.

Each shard holds the frames of one identity, and each identity belongs to one split, so no identity
is in two splits. The plan is deterministic, so an interrupted conversion rerun with the same
arguments resumes: shards already complete (listed with a matching hash) are skipped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from train.realdata.common import FrameRef, RealDataError, Source
from train.synth.dataset_index import INDEX_NAME, DatasetError, DatasetIndex
from train.synth.sample import Sample

FORMAT_META = "realdata/1"


@dataclass(frozen=True)
class ShardPlan:
    shard_id: int
    split: str
    identity: int
    frames: tuple[FrameRef, ...]


@dataclass(frozen=True)
class ConvertResult:
    out: Path
    n_frames: int
    n_shards: int
    n_resumed: int  # shards found complete and skipped
    splits: dict[int, str]  # identity → split
    counts: dict[str, dict[str, int]]  # split → label → frames


def assign_splits(identities) -> dict[int, str]:
    """identity % 10 == 0 → test, == 1 → val, else train. With ≥ 3 identities, test and val each get
    at least one, taken from the highest train identities while train keeps at least one."""
    ids = sorted({int(i) for i in identities})
    split = {i: {0: "test", 1: "val"}.get(i % 10, "train") for i in ids}
    if len(ids) >= 3:
        for wanted in ("test", "val"):
            train = [i for i in ids if split[i] == "train"]
            if wanted not in split.values() and len(train) >= 2:
                split[train[-1]] = wanted
    return split


def plan_shards(frames: list[FrameRef], shard_size: int, split: str | None = None) -> list[ShardPlan]:
    """One identity's frames in order, cut into shards of at most `shard_size`; `split` forces one split."""
    if shard_size < 1:
        raise ValueError(f"shard size must be ≥ 1, got {shard_size}")
    by_identity: dict[int, list[FrameRef]] = defaultdict(list)
    for ref in frames:
        by_identity[ref.identity].append(ref)
    splits = assign_splits(by_identity)
    plans = []
    for identity in sorted(by_identity):
        refs = by_identity[identity]
        for start in range(0, len(refs), shard_size):
            chunk = tuple(refs[start : start + shard_size])
            plans.append(ShardPlan(len(plans), split or splits[identity], identity, chunk))
    return plans


def _open_index(out: Path, meta: dict, hw: tuple[int, int]) -> DatasetIndex:
    if not (out / INDEX_NAME).is_file():
        return DatasetIndex(root=out, image_hw=hw, meta=meta)
    try:
        index = DatasetIndex.load(out)
    except DatasetError as exc:
        raise RealDataError(str(exc)) from exc
    same = {k: v for k, v in index.meta.items() if k != "command"} == {
        k: v for k, v in meta.items() if k != "command"
    }
    if not same or tuple(index.image_hw) != tuple(hw):
        raise RealDataError(
            f"{out / INDEX_NAME}: {out} holds a different dataset (other source, options or frame size); "
            "choose an empty --out directory or delete it"
        )
    return index


def _load_checked(source: Source, ref: FrameRef, hw: tuple[int, int], first: FrameRef) -> Sample:
    sample = source.load(ref)
    if sample.depth_mm.shape != hw:
        (h, w), (h0, w0) = sample.depth_mm.shape, hw
        raise RealDataError(
            f"{ref.path}: frame size {w}x{h} differs from the first frame's {w0}x{h0} ({first.path}); "
            "a dataset has one frame size: resize the source or convert each size separately"
        )
    return sample


def convert(
    source: Source,
    out: Path,
    shard_size: int = 64,
    split: str | None = None,
    progress: bool = True,
    command: list[str] | None = None,
) -> ConvertResult:
    """Write `source` as a dataset in `out`; resumes a conversion interrupted with the same arguments."""
    frames = source.frames()
    if not frames:
        raise RealDataError(f"{source.root}: no frames found")
    plans = plan_shards(frames, shard_size, split)
    splits = {p.identity: p.split for p in plans}
    meta = {
        "format": FORMAT_META,
        "source": source.kind,
        "src": str(Path(source.root).resolve()),
        "shard_size": shard_size,
        "n_frames": len(frames),
        "splits": {str(i): s for i, s in sorted(splits.items())},
        "command": command,
    }
    first = plans[0].frames[0]
    hw = source.load(first).depth_mm.shape  # the dataset's one frame size; one extra load
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = _open_index(out, meta, hw)
    resumed = 0
    with tqdm(total=len(frames), unit="frame", desc=f"{source.kind} → {out}", disable=not progress) as bar:
        for plan in plans:
            if index.is_complete(plan.shard_id):
                resumed += 1
                bar.update(len(plan.frames))
                continue
            samples = []
            for ref in plan.frames:
                samples.append(_load_checked(source, ref, hw, first))
                bar.update()
            index.add_shard(plan.shard_id, plan.split, samples)
    return ConvertResult(out, len(frames), len(plans), resumed, splits, index.counts())
