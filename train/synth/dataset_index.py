"""The dataset index: `index.json` beside the shards, the one file that says what a dataset holds.

    {
      "format": "facedepth-dataset/1",
      "image_hw": [480, 640],
      "meta": {...},                       # generator config, seed, command, source commit
      "shards": [{"file": "shard-00000.npz", "split": "train", "n": 64, "sha256": "...",
                  "labels": {"bona_fide": 55, "print_flat": 3, ...}, "identities": [12, 13, ...]}],
      "counts": {"train": {"bona_fide": ..., ...}, "val": {...}, "test": {...}}
    }

Splits are assigned per shard and every identity lives in exactly one shard's identity range, so no
identity is in two splits. The index is rewritten atomically after each shard; a shard listed in it is
complete and its hash is recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from train.synth.sample import Sample
from train.synth.shards import CorruptShardError, ShardReader, sha256_of, write_shard

FORMAT = "facedepth-dataset/1"
INDEX_NAME = "index.json"
SPLITS = ("train", "val", "test")


class DatasetError(RuntimeError):
    """A dataset directory that cannot be used, with what to do about it."""


def write_json_atomic(path: Path, obj: object) -> None:
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class ShardEntry:
    file: str
    split: str
    n: int
    sha256: str
    labels: dict[str, int]
    identities: list[int]


@dataclass
class DatasetIndex:
    root: Path
    image_hw: tuple[int, int]
    meta: dict = field(default_factory=dict)
    shards: dict[int, ShardEntry] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> DatasetIndex:
        root = Path(root)
        path = root / INDEX_NAME
        if not root.is_dir():
            raise DatasetError(f"{root}: no such dataset directory; create one with `make data`")
        if not path.is_file():
            raise DatasetError(f"{path}: missing; {root} is not a facedepth dataset (run `make data`)")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc}); regenerate the dataset") from exc
        if raw.get("format") != FORMAT:
            raise DatasetError(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}")
        shards = {int(e["file"][6:11]): ShardEntry(**e) for e in raw["shards"]}
        return cls(root=root, image_hw=tuple(raw["image_hw"]), meta=raw.get("meta", {}), shards=shards)

    def save(self) -> None:
        entries = [self.shards[k].__dict__ for k in sorted(self.shards)]
        write_json_atomic(
            self.root / INDEX_NAME,
            {
                "format": FORMAT,
                "image_hw": list(self.image_hw),
                "meta": self.meta,
                "shards": entries,
                "counts": self.counts(),
            },
        )

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, Counter] = {s: Counter() for s in SPLITS}
        for e in self.shards.values():
            out[e.split].update(e.labels)
        return {s: dict(sorted(c.items())) for s, c in out.items()}

    def entries(self, split: str | None = None) -> list[ShardEntry]:
        return [self.shards[k] for k in sorted(self.shards) if split in (None, self.shards[k].split)]

    def content_sha256(self) -> str:
        """sha256 over the shards' names, splits and hashes: the same for the same recipe whatever commit
        wrote index.json (its meta names the commit, so the file's own hash changes with every commit)."""
        h = hashlib.sha256()
        for e in self.entries():
            h.update(f"{e.file} {e.split} {e.sha256}\n".encode())
        return h.hexdigest()

    def readers(self, split: str | None = None, verify: bool = True):
        """Yield a ShardReader per shard of `split`, checking each shard's sha256."""
        for e in self.entries(split):
            yield ShardReader(self.root / e.file, e.sha256 if verify else None)

    def n_samples(self, split: str | None = None) -> int:
        return sum(e.n for e in self.entries(split))

    def is_complete(self, shard_id: int) -> bool:
        """True if the shard is listed and its file exists with the recorded hash."""
        e = self.shards.get(shard_id)
        path = self.root / f"shard-{shard_id:05d}.npz"
        return e is not None and path.is_file() and sha256_of(path) == e.sha256

    def add_shard(self, shard_id: int, split: str, samples: list[Sample]) -> ShardEntry:
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {SPLITS}")
        name = f"shard-{shard_id:05d}.npz"
        sha = write_shard(self.root / name, samples)
        entry = ShardEntry(
            file=name,
            split=split,
            n=len(samples),
            sha256=sha,
            labels=dict(Counter(s.label for s in samples)),
            identities=sorted({int(s.identity) for s in samples}),
        )
        self.shards[shard_id] = entry
        self.save()
        return entry


def split_for_shard(shard_id: int) -> str:
    """Shard-level split: 1 in 10 shards is test, 1 in 10 val, the rest train."""
    return {0: "test", 1: "val"}.get(shard_id % 10, "train")


__all__ = [
    "CorruptShardError",
    "DatasetError",
    "DatasetIndex",
    "ShardEntry",
    "split_for_shard",
    "write_json_atomic",
]
