"""One training loop for every variant: train.train's compile_model and make_dataset, `steps` steps, timed.

No validation pass during training: every variant is scored once, on the test split, after conversion
(convert/study/measure.py), so validation would only cost time. Progress is one log line every
`log_every` steps with the step time and an ETA.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from train.config import Config
from train.data import make_dataset
from train.train import compile_model

log = logging.getLogger(__name__)
WARMUP_STEPS_SKIPPED = 2  # the first steps include graph tracing: not part of ms/step


@dataclass(frozen=True)
class FitStats:
    steps: int
    step_ms: float  # median wall time of one optimiser step (batch of cfg.data.batch_size), this machine
    seconds: float
    final_loss: float


class StepTimer(keras.callbacks.Callback):
    """Per-step wall times and one progress line every `every` steps."""

    def __init__(self, label: str, total: int, every: int):
        super().__init__()
        self.label, self.total, self.every = label, total, max(1, every)
        self.times: list[float] = []
        self.loss = float("nan")

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.t0)
        self.loss = float((logs or {}).get("loss", self.loss))
        done = len(self.times)
        if done % self.every == 0 or done == self.total:
            ms = self.step_ms()
            eta = (self.total - done) * ms / 1000
            log.info("%s: step %d/%d, loss %.4g, %.0f ms/step, ETA %dm%02ds", self.label, done, self.total,
                     self.loss, ms, eta // 60, eta % 60)

    def step_ms(self) -> float:
        t = self.times[WARMUP_STEPS_SKIPPED:] or self.times
        return 1000 * float(np.median(t)) if t else float("nan")


class Snapshot(keras.callbacks.Callback):
    """Save `model` (default: the trained model) after step `at`: the start point of derived variants."""

    def __init__(self, path: Path, at: int, model: keras.Model | None = None):
        super().__init__()
        self.path, self.at, self.target = Path(path), at, model

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.at:
            (self.target or self.model).save(self.path)
            log.info("snapshot after step %d: %s", self.at, self.path)


def fit(model: keras.Model, tcfg: Config, index, label: str, callbacks=(), log_every: int = 50,
        compiled: bool = False) -> FitStats:
    """Train `model` for tcfg.train.steps_per_epoch steps on the study's data (compiled here unless told)."""
    steps = tcfg.train.steps_per_epoch
    if not compiled:
        compile_model(model, tcfg, steps)
    ds, _ = make_dataset(tcfg, "train", True, index)
    timer = StepTimer(label, steps, log_every)
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=steps, callbacks=[timer, *callbacks], verbose=0, shuffle=False)
    return FitStats(steps, timer.step_ms(), time.perf_counter() - t0, timer.loss)
