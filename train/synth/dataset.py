"""Write a sharded synthetic dataset in parallel, resumably.

Workers each generate and write whole shards (atomically, see shards.py); the parent alone updates
`index.json`, after each finished shard. On a rerun with the same arguments, shards already listed
with a matching hash are kept and the rest (missing, half-written `.tmp`, or altered) are regenerated.
A larger --n with otherwise the same arguments grows the dataset: a shard depends only on (seed, shard
id, its size), so the shards already there are the ones the larger recipe starts with.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import multiprocessing as mp
import resource
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from train.provenance import source_commit
from train.synth.dataset_index import DatasetError, DatasetIndex, ShardEntry, split_for_shard
from train.synth.generator import GeneratorConfig, generate_shard, shard_labels, warm_up
from train.synth.shards import write_shard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetPlan:
    out: Path
    n: int
    seed: int
    shard_size: int
    config: GeneratorConfig
    split: str | None = None  # only the shards split_for_shard gives this split (e.g. a test set)

    @property
    def n_shards(self) -> int:
        return -(-self.n // self.shard_size)

    def shard_ids(self) -> list[int]:
        """The dataset's shard ids: 0, 1, 2... or, for one split, the ids that split_for_shard assigns
        to it (test: 0, 10, 20...). Identities are drawn from (seed, shard id), so a one-split set holds
        the very shards, and identities, that a full dataset of the same seed puts in that split:
        identity-disjoint from the other splits of every dataset made with that seed."""
        if self.split is None:
            return list(range(self.n_shards))
        ids = (s for s in itertools.count() if split_for_shard(s) == self.split)
        return list(itertools.islice(ids, self.n_shards))

    def shard_n(self, shard_id: int) -> int:
        position = self.shard_ids().index(shard_id) if self.split else shard_id
        return min(self.shard_size, self.n - position * self.shard_size)

    def planned_counts(self) -> dict[str, int]:
        """Samples per label this plan will hold (labels are drawn before any rendering)."""
        counts: Counter = Counter()
        for s in self.shard_ids():  # the rng generate_shard draws a shard's labels from
            rng = np.random.default_rng([self.seed, s, 0, 0])
            counts.update(shard_labels(self.config, self.shard_n(s), rng))
        return dict(sorted(counts.items()))

    def meta(self) -> dict:
        meta = {
            "generator": self.config.to_dict(),
            "n": self.n,
            "seed": self.seed,
            "shard_size": self.shard_size,
            "source_commit": source_commit(),
        }
        if self.split:
            meta["split"] = self.split  # absent for a full dataset, as in datasets written before it
        return meta


def _open_index(plan: DatasetPlan) -> DatasetIndex:
    plan.out.mkdir(parents=True, exist_ok=True)
    for stale in plan.out.glob("*.tmp"):
        stale.unlink()  # a shard or index cut off mid-write: never valid, always regenerated
    if (plan.out / "index.json").exists():
        index = DatasetIndex.load(plan.out)
        old = {k: v for k, v in index.meta.items() if k not in ("source_commit", "n")}
        new = {k: v for k, v in plan.meta().items() if k not in ("source_commit", "n")}
        if _jsonish(old) != _jsonish(new):
            raise DatasetError(
                f"{plan.out} holds a dataset made with other arguments; "
                "rerun with the same --n/--seed/--shard-size/config, or choose a new --out"
            )
        if plan.n < index.meta["n"]:
            raise DatasetError(
                f"{plan.out} holds {index.meta['n']} frames and --n {plan.n} would drop some; rerun with "
                f"--n {index.meta['n']} or more (a larger --n grows it), or choose a new --out"
            )
        if plan.n > index.meta["n"]:
            log.info("%s: growing from %d to %d frames", plan.out, index.meta["n"], plan.n)
            index.meta = plan.meta()
            index.save()
        return index
    index = DatasetIndex(root=plan.out, image_hw=(plan.config.height, plan.config.width), meta=plan.meta())
    index.save()
    return index


def _jsonish(obj):
    """The value as it reads back from index.json (tuples become lists), so old and new compare."""
    return json.loads(json.dumps(obj))


def _work(args: tuple[DatasetPlan, int]) -> tuple[int, ShardEntry, int, float]:
    plan, shard_id = args
    cpu = time.process_time()
    samples = generate_shard(plan.config, plan.seed, shard_id, plan.shard_n(shard_id))
    name = f"shard-{shard_id:05d}.npz"
    sha = write_shard(plan.out / name, samples)
    entry = ShardEntry(
        file=name,
        split=split_for_shard(shard_id),
        n=len(samples),
        sha256=sha,
        labels=dict(Counter(s.label for s in samples)),
        identities=sorted({s.identity for s in samples}),
    )
    cpu = time.process_time() - cpu
    return shard_id, entry, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, cpu


@dataclass(frozen=True)
class WriteReport:
    generated: int  # samples generated in this run
    skipped: int  # samples of shards already complete
    seconds: float
    peak_rss_mb_per_worker: float
    cpu_seconds: float = 0.0  # the workers' CPU time generating and writing shards, all together

    @property
    def frames_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_frame(self) -> float:
        """CPU cost of a frame, which other load on the machine hardly changes (wall time it does)."""
        return 1000.0 * self.cpu_seconds / self.generated if self.generated else 0.0


def write_dataset(plan: DatasetPlan, workers: int, progress: bool = True) -> WriteReport:
    index = _open_index(plan)
    # a grown dataset's last shard may have been cut short by the smaller recipe: rendered again at full size
    todo = [s for s in plan.shard_ids() if not index.is_complete(s) or index.shards[s].n != plan.shard_n(s)]
    skipped = sum(plan.shard_n(s) for s in plan.shard_ids() if s not in todo)
    total = sum(plan.shard_n(s) for s in todo)
    bar = tqdm(
        total=total, unit="frame", desc=f"dataset {plan.out.name}", disable=not progress, smoothing=0.1
    )
    peak_kb, cpu = 0, 0.0
    if todo:
        warm_up(plan.config)
    start = time.perf_counter()
    ctx = mp.get_context("fork")
    try:
        with ctx.Pool(workers, maxtasksperchild=50) as pool:
            for shard_id, entry, rss_kb, shard_cpu in pool.imap_unordered(_work, [(plan, s) for s in todo]):
                index.shards[shard_id] = entry
                index.save()
                peak_kb = max(peak_kb, rss_kb)
                cpu += shard_cpu
                bar.update(entry.n)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DatasetError(
                f"disk full while writing {plan.out}: free some space and rerun the same "
                "command; finished shards are kept and the interrupted one is regenerated"
            ) from exc
        raise
    finally:
        bar.close()
    return WriteReport(total, skipped, time.perf_counter() - start, peak_kb / 1024.0, cpu)
