"""What `python -m firmware_app profile` reports: frames/s, CPU, RSS growth, SoC state, per-stage latency.

`build_report` turns a finished profiling run (its Profiler and Daemon) into the JSON the command writes;
`report_table` is the console summary of it. No plotting here (firmware_app.profiling draws, and only
when matplotlib is installed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from firmware_app import env


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def throttled() -> str | None:
    import subprocess

    tool = env.path(env.VCGENCMD)
    if not tool.exists():
        return None
    try:
        return subprocess.run(
            [str(tool), "get_throttled"], capture_output=True, text=True, timeout=2
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


# RSS settles within a minute (model arenas, thread pools, the first tracks and decisions): in a 40-minute
# soak on the quick-start clip (2026-12-03) it was 140.0 MB at 1 s, 152.4 at 10 s, 153.3 at 60 s and
# 153.9 MB at the end. Growth is measured from there, not from the first second.
WARMUP_S = 60.0
WARMUP_SHARE = 0.1  # ... or from this share of a shorter run
MIN_SLOPE_SPAN_S = 240.0


def growth(start: float | None, end: float | None) -> float | None:
    return round(100 * (end - start) / start, 2) if start and end else None


def warm_sample(timeline: list) -> tuple[float, float] | None:
    """(t_s, RSS MB) of the first timeline sample past the warm-up (None: no RSS in the timeline)."""
    samples = [(t, r) for t, _, r in timeline if r]
    if not samples:
        return None
    after = min(WARMUP_S, WARMUP_SHARE * samples[-1][0])
    return next((t, r) for t, r in samples if t >= after)


def rss_slope_mb_per_h(timeline: list, warm_t: float) -> float | None:
    """Least-squares RSS slope over the second half of the samples after warm-up, in MB per hour: a leak's
    signature, which a start-to-end difference hides in allocator noise. None when that half spans under
    MIN_SLOPE_SPAN_S (a ten-minute soak's spans 270 s): over a minute or two the allocator's own steps read
    as tens of MB an hour."""
    samples = [(t, r) for t, _, r in timeline if r and t >= warm_t]
    half = samples[len(samples) // 2:]
    if len(half) < 10 or half[-1][0] - half[0][0] < MIN_SLOPE_SPAN_S:
        return None
    t, r = np.array(half, np.float64).T
    return round(float(np.polyfit(t, r, 1)[0]) * 3600.0, 2)


def report_table(report: dict, out: Path) -> str:
    lines = [f"{'stage':10s} {'n':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}"]
    for name, s in report["stages"].items():
        if s["n"]:
            lines.append(f"{name:10s} {s['n']:6d} {s['p50_ms']:8.2f} {s['p95_ms']:8.2f} {s['max_ms']:8.2f}")
    growth, warm_growth = report.get("rss_growth_percent"), report.get("rss_growth_after_warmup_percent")
    lines.append(
        f"RSS {report['rss_mb_start'] or 0:.1f} MB at start, {report['rss_mb_end'] or 0:.1f} MB at end"
        + (f" ({growth:+.2f}%)" if growth is not None else "")
        + (
            f"; from {report['rss_mb_warm']:.1f} MB after warm-up ({report['rss_warm_t_s']:.0f} s) "
            f"{warm_growth:+.2f}%"
            if warm_growth is not None
            else ""
        )
        + (
            f"; second-half slope {report['rss_slope_mb_per_h']:+.2f} MB/h"
            if report.get("rss_slope_mb_per_h") is not None
            else ""
        )
    )
    lines.append(
        f"{report['frames']} frames in {report['wall_s']:.1f} s: {report['fps']:.1f} frames/s, "
        f"CPU {report['cpu_percent']:.0f}%, RSS {report['rss_mb_end'] or 0:.0f} MB; wrote {out}"
    )
    return "\n".join(lines)


def build_report(profiler, daemon, cfg, wall: float, cpu: float, rss0: float | None) -> dict:
    """The profile's JSON: rates over `wall` seconds, RSS from `rss0` to now, the per-stage summary."""
    rss1 = env.rss_mb()
    warm_t, warm = warm_sample(profiler.timeline) or (None, None)
    return {
        "frames": profiler.frames,
        "wall_s": round(wall, 3),
        "fps": round(profiler.frames / wall, 2) if wall > 0 else 0.0,
        "cpu_percent": round(100 * cpu / wall, 1) if wall > 0 else 0.0,
        "rss_mb_start": rss0,
        "rss_mb_end": rss1,
        "rss_growth_percent": growth(rss0, rss1),
        # after the warm-up (WARMUP_S, or WARMUP_SHARE of a short run): what a leak would show as
        "rss_mb_warm": warm,
        "rss_warm_t_s": warm_t,
        "rss_growth_after_warmup_percent": growth(warm, rss1),
        "rss_slope_mb_per_h": rss_slope_mb_per_h(profiler.timeline, warm_t) if warm_t is not None else None,
        "soc_temperature_c": env.soc_temperature_c(),
        "throttled": throttled(),
        "decisions": daemon.decisions,
        "camera_errors": daemon.camera.errors,
        "threads": {"detector": cfg.detector.num_threads, "depth": cfg.depth.num_threads},
        "stages": profiler.summary()["stages"],
        "timeline": [{"t_s": t, "fps": f, "rss_mb": r} for t, f, r in profiler.timeline],
    }
