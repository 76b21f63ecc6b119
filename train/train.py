"""Train the two-stage depth network: `python -m train --config train/configs/NAME.yaml [--set k=v ...]`.

Run directory `out_dir/<name>/`:
    run.json        config, dataset path + index sha256, params/MACs, bins, crop, status, best epoch
    model.keras     best checkpoint by validation relief MAE (with run.json: all that later steps need)
    log.csv         one row per epoch (learning curves); tb/ TensorBoard scalars; backup/ resume state
Rerunning the same command after a kill resumes from the last finished epoch (BackupAndRestore);
a finished run or a different config under the same name is refused (use --set train.name=NEW).
`train.run_eagerly: true` skips graph tracing (~30 s on 2 cores) at ~10× the step time: debugging only.

Distribution (`train.strategy`), one code path — the model is built and compiled in `strategy.scope()`,
`data.batch_size` is per replica and the global batch is batch_size × replicas:
    default       one device (CPU or a single GPU)
    mirrored      MirroredStrategy: all local GPUs, gradients all-reduced
    multi_worker  MultiWorkerMirroredStrategy: one process per machine, cluster from TF_CONFIG, e.g.
                  TF_CONFIG='{"cluster": {"worker": ["h1:2222", "h2:2222"]}, "task": {"type": "worker",
                  "index": 0}}' python -m train --config ...   (same command on every worker, index
                  0..N-1). Each worker reads every N-th sample; worker 0 writes the run directory,
                  the others write under run_dir/workers/<index>/.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from firmware_app.preprocess import GRID_SIZE, INPUT_SIZE
from train.config import Config, ConfigError, config_from_dict
from train.data import make_dataset
from train.metrics import ReliefLoss, relief_mae
from train.model import bin_centres, bin_edges, build_model, count_macs
from train.provenance import source_commit
from train.synth.dataset_index import DatasetIndex, write_json_atomic
from train.synth.shards import sha256_of

log = logging.getLogger(__name__)
RUN_FORMAT = "facedepth-run/1"
MONITOR = "val_relief_mae_mm"


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("train.strategy multi_worker needs TF_CONFIG (see train/train.py docstring)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"train.strategy {name!r}: expected default, mirrored or multi_worker")


def worker_of(strategy: tf.distribute.Strategy) -> tuple[int, int]:
    """(this worker's index, number of workers); chief first."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 0, 1
    spec = json.loads(os.environ["TF_CONFIG"])
    order = [(t, i) for t in ("chief", "worker") for i in range(len(spec["cluster"].get(t, [])))]
    return order.index((spec["task"]["type"], int(spec["task"]["index"]))), len(order)


def compile_model(model: keras.Model, cfg: Config, total_steps: int) -> None:
    t = cfg.train
    warmup = min(t.warmup_steps, total_steps // 4)
    schedule = keras.optimizers.schedules.CosineDecay(
        t.lr * 0.01, max(total_steps - warmup, 1), alpha=0.01, warmup_target=t.lr, warmup_steps=warmup)
    opt = keras.optimizers.AdamW(schedule, weight_decay=t.weight_decay)
    opt.exclude_from_weight_decay(var_names=["_bn", "bias"])
    loss = {"bins": keras.losses.SparseCategoricalCrossentropy(), "relief": ReliefLoss(t.w_grad, t.w_scale)}
    weights = {"bins": t.w_bins, "relief": t.w_relief}
    metrics = {
        "bins": [keras.metrics.SparseCategoricalAccuracy(name="top1"),
                 keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")],
        "relief": [keras.metrics.MeanMetricWrapper(relief_mae, name="mae_mm")],
    }
    if cfg.model.has_live:  # 1 = bona fide; attacks keep their flat relief target as well
        loss["live"] = keras.losses.BinaryCrossentropy(from_logits=True)
        weights["live"] = t.w_live
        metrics["live"] = [keras.metrics.AUC(from_logits=True, name="auc")]
    model.compile(
        optimizer=opt,
        loss=loss,
        loss_weights=weights,
        metrics=metrics,
        jit_compile=t.jit_compile,
        run_eagerly=t.run_eagerly,
    )


def run_info(cfg: Config, index: DatasetIndex, model: keras.Model) -> dict:
    stats = count_macs(model)
    outputs = {k: list(v.shape[1:]) for k, v in model.output.items()}
    return {
        "format": RUN_FORMAT,
        "name": cfg.train.name,
        "config": cfg.to_dict(),
        "dataset": {"path": str(Path(index.root).resolve()), "counts": index.counts(),
                    "index_sha256": sha256_of(Path(index.root) / "index.json")},
        "model": {"params": stats.params, "macs": stats.macs, "input": [INPUT_SIZE, INPUT_SIZE, 3],
                  "input_range": "RGB 0..255", "outputs": outputs},
        "crop": {"input_size": INPUT_SIZE, "grid_size": GRID_SIZE, "scale": cfg.data.crop_scale,
                 "use_eyes": cfg.data.use_eyes, "border": cfg.data.border},
        "bins": {"edges_mm": bin_edges(cfg.model).tolist(), "centres_mm": bin_centres(cfg.model).tolist(),
                 "background_class": cfg.model.n_bins},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
        "source_commit": source_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
        "epochs_done": 0,
    }


WEIGHTS_FILE = "model.weights.h5"  # weights only: what models/default commits (no optimizer state)


def load_run(run_dir) -> tuple[Config, keras.Model, dict]:
    """(config, best model, run.json) of a run directory or of the committed models/default (run.json +
    model.weights.h5: the model is rebuilt from the config); all a later step needs."""
    run_dir = Path(run_dir)
    info_path, model_path, weights = run_dir / "run.json", run_dir / "model.keras", run_dir / WEIGHTS_FILE
    if not info_path.is_file() or not (model_path.is_file() or weights.is_file()):
        raise FileNotFoundError(f"{run_dir}: not a finished run directory (needs run.json and model.keras or "
                                f"{WEIGHTS_FILE}; train one with `python -m train --config ...`)")
    info = json.loads(info_path.read_text())
    cfg = config_from_dict(info["config"])
    if model_path.is_file():
        return cfg, keras.saving.load_model(model_path, compile=False), info
    model = build_model(cfg.model)
    model.load_weights(weights)
    return cfg, model, info


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch with step time, throughput and ETA; keeps run.json's progress current."""

    def __init__(self, run_dir: Path, info: dict, epochs: int, global_batch: int, write: bool,
                 max_minutes: float = 0.0):
        super().__init__()
        self.max_s = 60 * max_minutes
        self.run_dir, self.info, self.epochs, self.write = run_dir, info, epochs, write
        self.batch = global_batch
        self.start = time.perf_counter()
        self.done_here = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.t_epoch, self.step_times = time.perf_counter(), []

    def on_train_batch_begin(self, batch, logs=None):
        self.t_step = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step_times.append(time.perf_counter() - self.t_step)

    def on_epoch_end(self, epoch, logs=None):
        self.done_here += 1
        logs = logs or {}
        now = time.perf_counter()
        steps = self.step_times[1:] or self.step_times  # the first step includes tracing
        step_s = float(np.median(steps))
        per_epoch = (now - self.start) / self.done_here
        eta = per_epoch * (self.epochs - epoch - 1)
        shown = " ".join(f"{k} {v:.4g}" for k, v in sorted(logs.items()) if k != "learning_rate")
        log.info("epoch %d/%d: %s | %.0f ms/step, %.2f steps/s, %.1f img/s | epoch %.0fs, ETA %s",
                 epoch + 1, self.epochs, shown, 1000 * step_s, 1 / step_s, self.batch / step_s,
                 now - self.t_epoch, _hms(eta))
        self.info.update(epochs_done=epoch + 1, last_epoch={k: float(v) for k, v in logs.items()},
                         step_ms=1000 * step_s, steps_per_s=1 / step_s)
        if self.write:
            write_json_atomic(self.run_dir / "run.json", self.info)
        if self.max_s and now - self.start + per_epoch > self.max_s and epoch + 1 < self.epochs:
            log.info("stopping after epoch %d: the next would end past train.max_minutes", epoch + 1)
            self.model.stop_training = True


def _hms(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


class Scalars(keras.callbacks.Callback):
    """TensorBoard scalars via core tf.summary.write (the `tensorboard` package is not needed to write)."""

    def __init__(self, log_dir: Path, every: int = 20):
        super().__init__()
        from tensorflow.core.framework import summary_pb2

        plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        self.meta = summary_pb2.SummaryMetadata(plugin_data=plugin)
        self.train = tf.summary.create_file_writer(str(log_dir / "train"))
        self.val = tf.summary.create_file_writer(str(log_dir / "validation"))
        self.every, self.step = every, 0

    def _write(self, writer, values: dict, step: int) -> None:
        with writer.as_default():
            for k, v in values.items():
                tf.summary.write(k, tf.constant(float(v)), step=step, metadata=self.meta)

    def on_train_batch_end(self, batch, logs=None):
        self.step = int(self.model.optimizer.iterations.numpy())
        if logs and self.step % self.every == 0:
            self._write(self.train, {"step/" + k: v for k, v in logs.items()}, self.step)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self._write(self.train, {k: v for k, v in logs.items() if not k.startswith("val_")}, epoch + 1)
        self._write(self.val, {k[4:]: v for k, v in logs.items() if k.startswith("val_")}, epoch + 1)
        self.train.flush()
        self.val.flush()


def _best_so_far(csv_path: Path, monitor: str) -> float | None:
    """Best monitored value in an existing log.csv, so a resumed ModelCheckpoint keeps the real best."""
    values = [float(r[monitor]) for r in read_csv(csv_path) if r.get(monitor) not in (None, "")]
    return min(values) if values else None


def prepare_run_dir(cfg: Config, is_chief: bool, worker: int) -> Path:
    run_dir = Path(cfg.train.out_dir) / cfg.train.name
    if not is_chief:  # Keras needs every worker to write checkpoints; only the chief's are kept
        (run_dir / "workers" / str(worker)).mkdir(parents=True, exist_ok=True)
        return run_dir / "workers" / str(worker)
    info_path = run_dir / "run.json"
    if info_path.is_file():
        old = json.loads(info_path.read_text())
        if old.get("config") != json.loads(json.dumps(cfg.to_dict())):
            raise ConfigError(f"{run_dir} holds a run with a different config; pick another train.name "
                              "(--set train.name=NEW) or delete that directory")
        if old.get("status") == "done":
            raise ConfigError(f"{run_dir}: this run already finished; evaluate it with `python -m "
                              f"train.evaluate {run_dir}` or start another with --set train.name=NEW")
        log.info("resuming %s from its last finished epoch", run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def train(cfg: Config, extra_callbacks: list | None = None) -> Path:
    """Train (or resume) the run of `cfg`; returns the run directory."""
    keras.utils.set_random_seed(cfg.train.seed)
    index = DatasetIndex.load(cfg.data.dataset)
    strategy = make_strategy(cfg.train.strategy)
    worker, n_workers = worker_of(strategy)
    run_dir = prepare_run_dir(cfg, worker == 0, worker)
    global_batch = cfg.data.batch_size * strategy.num_replicas_in_sync
    train_ds, n_train = make_dataset(cfg, "train", True, index, global_batch, (worker, n_workers))
    has_val = index.n_samples("val") > 0
    val_ds = make_dataset(cfg, "val", False, index, global_batch)[0] if has_val else None
    steps = cfg.train.steps_per_epoch or max(n_train // global_batch, 1)
    with strategy.scope():
        model = build_model(cfg.model)
        baseline_model = model
        if cfg.train.init_from_run:  # architecture change (BackupAndRestore still wins when resuming)
            baseline_model = transfer_start(model, cfg, steps * cfg.train.epochs)
        elif cfg.train.init_weights:  # warm start (BackupAndRestore still wins when resuming this run)
            model.load_weights(cfg.train.init_weights)
            log.info("warm start from %s", cfg.train.init_weights)
        compile_model(model, cfg, steps * cfg.train.epochs)
    info = run_info(cfg, index, model)
    old = run_dir / "run.json"
    if old.is_file():  # resuming: keep creation time (and the start weights' validation figures)
        kept = json.loads(old.read_text())
        info["created"] = kept.get("created", info["created"])
        if "baseline_val" in kept:
            info["baseline_val"] = kept["baseline_val"]
    if cfg.train.init_weights and val_ds is not None and "baseline_val" not in info:
        # The start weights scored on this run's own validation split: the bar a warm start must clear
        # (a regenerated dataset has another split, so earlier sessions' figures do not compare).
        scores = baseline_model.evaluate(val_ds, return_dict=True, verbose=0)
        info["baseline_val"] = {f"val_{k}": float(v) for k, v in scores.items()}
        log.info("start weights on this validation split: %s", info["baseline_val"])
    write_json_atomic(run_dir / "run.json", info)
    monitor = MONITOR if has_val else MONITOR[4:]
    callbacks = _callbacks(run_dir, info, cfg, monitor, global_batch, worker == 0) + (extra_callbacks or [])
    log.info("training %s: %d train samples, %d steps/epoch × %d epochs, global batch %d, %d replica(s)",
             cfg.train.name, n_train, steps, cfg.train.epochs, global_batch, strategy.num_replicas_in_sync)
    model.fit(train_ds, epochs=cfg.train.epochs, steps_per_epoch=steps, validation_data=val_ds,
              callbacks=callbacks, verbose=cfg.train.verbose, shuffle=False)
    _finish(run_dir, info, monitor, worker == 0)
    return run_dir


def transfer_weights(source: keras.Model, target: keras.Model) -> tuple[list[str], list[str]]:
    """Copy each weighted layer of `target` from `source`'s layer of the same name when all weight shapes
    agree; (copied, fresh) layer names. Keras' .weights.h5 is keyed by layer order, not by name, so a
    changed architecture cannot load it directly."""
    copied, fresh = [], []
    for layer in target.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            src = source.get_layer(layer.name).get_weights()
        except ValueError:
            src = None
        if src is not None and [w.shape for w in src] == [w.shape for w in weights]:
            layer.set_weights(src)
            copied.append(layer.name)
        else:
            fresh.append(layer.name)
    return copied, fresh


def transfer_start(model: keras.Model, cfg: Config, total_steps: int) -> keras.Model:
    """Warm start across an architecture change: the source model (the committed run init_from_run names,
    rebuilt by load_run), compiled for scoring, after its matching layers were copied into `model`."""
    source_cfg, source, _ = load_run(Path(cfg.train.init_from_run).parent)
    copied, fresh = transfer_weights(source, model)
    log.info("transfer from %s: %d layers copied, %d fresh (%s)", cfg.train.init_weights, len(copied),
             len(fresh), ", ".join(fresh))
    compile_model(source, dataclasses.replace(cfg, model=source_cfg.model), total_steps)
    return source


def _callbacks(run_dir: Path, info: dict, cfg: Config, monitor: str, global_batch: int, chief: bool) -> list:
    """Backup first: a crash in any later callback still leaves the epoch resumable."""
    best = _best_so_far(run_dir / "log.csv", monitor)
    return [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.ModelCheckpoint(str(run_dir / "model.keras"), monitor=monitor, mode="min",
                                        save_best_only=True, initial_value_threshold=best),
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
        Scalars(run_dir / "tb"),
        EpochLog(run_dir, info, cfg.train.epochs, global_batch, chief, cfg.train.max_minutes),
    ]


def _finish(run_dir: Path, info: dict, monitor: str, write: bool) -> None:
    rows = read_csv(run_dir / "log.csv")
    best = min(rows, key=lambda r: float(r[monitor])) if rows and monitor in rows[0] else None
    info.update(status="done", finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if best:
        info["best"] = {"epoch": int(best["epoch"]) + 1, monitor: float(best[monitor])}
    if write:
        write_json_atomic(run_dir / "run.json", info)
    log.info("done: %s (best %s)", run_dir, info.get("best"))


def read_csv(path: Path) -> list[dict]:
    """Rows of a Keras CSVLogger file (log.csv), [] if there is none."""
    if not Path(path).is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))
