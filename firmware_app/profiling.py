"""Per-stage timers and one sliding-window FPS meter (never computed inline in the loop).

profiler = Profiler(window=1000)
with profiler.stage("detect"):
    faces = detector.detect(frame)
profiler.frame_done()              # one frame through the pipeline (feeds the FPS meter)
profiler.summary()                 # {"fps": .., "stages": {"detect": {"p50_ms", "p95_ms", "max_ms", "n"}}}

Profiler(timeline_s=1.0) also keeps one (seconds since the first frame, FPS over the interval, RSS MiB)
sample per interval (the `profile` command's FPS-over-time and soak figures); `plot_profile` draws a
report as a PNG with matplotlib, imported only there (not a device dependency).
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager

import numpy as np


class FpsMeter:
    """Events per second over the last `window_s` seconds (frigate's EventsPerSecond, by timestamps)."""

    def __init__(self, window_s: float = 10.0, max_events: int = 10000):
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=max_events)

    def tick(self, now: float | None = None) -> None:
        self._times.append(time.monotonic() if now is None else now)

    def fps(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


class StageTimer:
    """The last `window` durations of one stage, in seconds."""

    def __init__(self, window: int = 1000):
        self.samples: deque[float] = deque(maxlen=window)
        self.count = 0
        self.total_s = 0.0

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self.count += 1
        self.total_s += seconds

    def stats(self) -> dict:
        if not self.samples:
            return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None, "mean_ms": None}
        ms = np.asarray(self.samples) * 1000.0
        p50, p95 = np.percentile(ms, [50, 95])
        return {
            "n": len(ms),
            "p50_ms": round(float(p50), 3),
            "p95_ms": round(float(p95), 3),
            "max_ms": round(float(ms.max()), 3),
            "mean_ms": round(float(ms.mean()), 3),
        }


class Profiler:
    def __init__(self, window: int = 1000, fps_window_s: float = 10.0, timeline_s: float = 0.0):
        self.window = window
        self.stages: dict[str, StageTimer] = {}
        self.fps_meter = FpsMeter(fps_window_s)
        self.frames = 0
        self.timeline_s = timeline_s
        self.timeline: list[tuple[float, float, float | None]] = []
        self._t_first = self._t_last = 0.0
        self._frames_last = 0

    def add(self, name: str, seconds: float) -> None:
        timer = self.stages.get(name)
        if timer is None:
            timer = self.stages[name] = StageTimer(self.window)
        timer.add(seconds)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def frame_done(self) -> None:
        self.frames += 1
        self.fps_meter.tick()
        if self.timeline_s > 0:
            self._sample(time.monotonic())

    def _sample(self, now: float) -> None:
        if self.frames == 1:
            self._t_first = self._t_last = now
            self._frames_last = 1
            return
        if now - self._t_last >= self.timeline_s:
            from firmware_app.env import rss_mb

            fps = (self.frames - self._frames_last) / (now - self._t_last)
            self.timeline.append((round(now - self._t_first, 3), round(fps, 2), rss_mb()))
            self._t_last, self._frames_last = now, self.frames

    def last_ms(self, name: str) -> float | None:
        timer = self.stages.get(name)
        return round(timer.samples[-1] * 1000.0, 3) if timer and timer.samples else None

    def summary(self) -> dict:
        return {
            "frames": self.frames,
            "fps": round(self.fps_meter.fps(), 2),
            "stages": {name: t.stats() for name, t in self.stages.items()},
        }


def plot_profile(report: dict, path) -> bool:
    """The `profile` JSON report → PNG: per-stage p50/p95 bars and FPS over time.

    False (nothing written) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    stages = {k: v for k, v in report["stages"].items() if v.get("n")}
    timeline = report.get("timeline") or []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.arange(len(stages))
    ax1.bar(x - 0.2, [v["p50_ms"] for v in stages.values()], 0.4, label="p50")
    ax1.bar(x + 0.2, [v["p95_ms"] for v in stages.values()], 0.4, label="p95")
    ax1.set_xticks(x, list(stages), rotation=20)
    ax1.set_ylabel("ms per frame")
    ax1.set_title("stage latency")
    ax1.legend()
    if timeline:
        t, fps = [s["t_s"] for s in timeline], [s["fps"] for s in timeline]
        ax2.plot(t, fps, marker="." if len(t) < 50 else None)
    mean = report.get("fps", 0.0)
    ax2.axhline(mean, color="grey", linestyle="--", label=f"mean {mean:.1f}")
    ax2.set_xlabel("seconds")
    ax2.set_ylabel("frames/s")
    ax2.set_ylim(bottom=0)
    ax2.set_title("frame rate over time")
    ax2.legend()
    fig.suptitle(f"{report.get('frames', 0)} frames, {report.get('wall_s', 0):.1f} s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True
