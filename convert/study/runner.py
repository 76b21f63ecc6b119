"""Run the study: each variant trained, saved, converted and measured once; finished variants skipped.

    out_dir/<name>/<variant>/  model.keras (stock layers), train.json, model_int8.tflite, result.json
                               (+ snapshot.keras for teacher and student: the derived variants' start)
    out_dir/<name>/            compression_study.md + .png (and in `docs` when given), study.json

Resuming: a variant with result.json is skipped; one with model.keras + train.json is only measured; any
other is trained from the start (a kill mid-training loses that variant's steps, not the finished ones).
Variants needed by others (teacher, student) are run first even when not asked for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import keras

from convert.study.config import ALL_VARIANTS, StudyConfig, model_config, train_config, with_parents
from convert.study.measure import Trained, VariantResult, measure
from convert.study.report import write_report
from train.synth.dataset_index import DatasetIndex, write_json_atomic

log = logging.getLogger(__name__)


def _train(ctx, variant: str) -> tuple[keras.Model, Trained]:
    from convert.study.variants import trainer_of

    out = ctx.dir(variant)
    if (out / "model.keras").is_file() and (out / "train.json").is_file():
        log.info("%s: trained earlier, measuring %s", variant, out / "model.keras")
        return ctx.load(variant), Trained(**json.loads((out / "train.json").read_text()))
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(ctx.cfg.seed)  # every variant starts from the same random state
    t0 = time.perf_counter()
    model, trained = trainer_of(variant)(ctx, variant)
    model.save(out / "model.keras")
    write_json_atomic(out / "train.json", dataclasses.asdict(trained))
    log.info("%s: trained in %.0f s (%.0f ms/step)", variant, time.perf_counter() - t0, trained.step_ms)
    return model, trained


def finished(root: Path) -> list[VariantResult]:
    """Every measured variant under root, in row order (pruneNN by NN)."""
    order = {v: i for i, v in enumerate(ALL_VARIANTS)}
    found = [VariantResult.load(p) for p in sorted(root.glob("*/result.json"))]
    return sorted(found, key=lambda r: (order.get(r.variant, order["prune80"]), r.variant))


def run_study(cfg: StudyConfig, only: tuple[str, ...] = (), docs: Path | None = None,
              config_path: str = "") -> list[VariantResult]:
    """Train and measure `only` (default: cfg.variants) plus what they need; then write the report."""
    from convert.study.variants import Context

    root = Path(cfg.out_dir) / cfg.name
    root.mkdir(parents=True, exist_ok=True)
    _check_same_config(root, cfg)
    ctx = Context(cfg, root, DatasetIndex.load(cfg.dataset))
    names = with_parents(only or cfg.variants)
    log.info("study %s: %s (%d steps each, %d of them fine-tuning for derived variants)", cfg.name,
             ", ".join(names), cfg.steps, cfg.finetune_steps)
    for variant in names:
        out = ctx.dir(variant)
        if (out / "result.json").is_file():
            log.info("%s: done earlier (%s), skipped", variant, out / "result.json")
            continue
        model, trained = _train(ctx, variant)
        mcfg = model_config(cfg, teacher=variant in ("teacher", "tucker"))
        measure(variant, model, trained, train_config(cfg, mcfg, cfg.steps), ctx.index, ctx.crops, out,
                cfg.eval_samples, cfg.bench_runs)
    results = finished(root)
    write_report(results, cfg, root, config_path)
    if docs is not None:
        write_report(results, cfg, Path(docs), config_path)
    return results


def _check_same_config(root: Path, cfg: StudyConfig) -> None:
    """Results are only comparable under one config: refuse to mix, as train.train does for runs."""
    path = root / "study.json"
    want = json.loads(json.dumps(cfg.to_dict()))
    if path.is_file():
        old = json.loads(path.read_text())
        changed = sorted(k for k in set(old) | set(want) if k != "variants" and old.get(k) != want.get(k))
        if changed:
            from train.config import ConfigError

            raise ConfigError(f"{root} holds a study made with another config ({', '.join(changed)} differ): "
                              "set another name in the config or delete that directory")
    write_json_atomic(path, want)
