"""What `python -m firmware_app profile` reports: frames/s, CPU, RSS growth, SoC state, per-stage latency.

`build_report` turns a finished profiling run (its Profiler and Daemon) into the JSON the command writes;
`report_table` is the console summary of it. No plotting here (firmware_app.profiling draws, and only
when matplotlib is installed).
"""

from __future__ import annotations

import os
from pathlib import Path

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


def growth(start: float | None, end: float | None) -> float | None:
    return round(100 * (end - start) / start, 2) if start and end else None


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
            f"; from {report['rss_mb_warm']:.1f} MB after the first second {warm_growth:+.2f}%"
            if warm_growth is not None
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
    warm = profiler.timeline[0][2] if profiler.timeline else None
    return {
        "frames": profiler.frames,
        "wall_s": round(wall, 3),
        "fps": round(profiler.frames / wall, 2) if wall > 0 else 0.0,
        "cpu_percent": round(100 * cpu / wall, 1) if wall > 0 else 0.0,
        "rss_mb_start": rss0,
        "rss_mb_end": rss1,
        "rss_growth_percent": growth(rss0, rss1),
        # after the first second (interpreters' arenas, first frames): what a leak would show as
        "rss_mb_warm": warm,
        "rss_growth_after_warmup_percent": growth(warm, rss1),
        "soc_temperature_c": env.soc_temperature_c(),
        "throttled": throttled(),
        "decisions": daemon.decisions,
        "camera_errors": daemon.camera.errors,
        "threads": {"detector": cfg.detector.num_threads, "depth": cfg.depth.num_threads},
        "stages": profiler.summary()["stages"],
        "timeline": [{"t_s": t, "fps": f, "rss_mb": r} for t, f, r in profiler.timeline],
    }
