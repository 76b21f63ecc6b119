"""The study's markdown table, chart and the "what wins" paragraph, all computed from the results.

What wins is a deployment question, so it is asked as one: among the rows that run no slower than the
student on this machine (int8, 1 thread, within SLOWER_OK, or the student's very graph: same ops and
MACs, as pruned, distilled, binary and QAT rows are, whose timing differences are timer noise), which
has the lowest int8 MAE? The paragraph
also names the most accurate row overall, the smallest after gzip, the Pareto front on (int8 ms, MAE),
how much of the teacher→student gap distillation closes, and QAT against PTQ.
"""

from __future__ import annotations

import logging
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from convert.study.measure import is_16x8
from train.provenance import cpu_model, source_commit

log = logging.getLogger(__name__)
SLOWER_OK = 1.10  # "no slower than the student": int8 ms within 10 % (timer noise on a shared CPU)
FEW_STEPS = 1000  # below this many steps per variant the ranking is a pipeline check, not a finding
NAME = "compression_study"


def _row(r) -> str:
    notes = ", ".join(f"{k} {v}" for k, v in r.extra.items() if k != "binary_weights")
    train_ms = f"{r.train_ms_per_step:.0f}" if r.train_steps else "—"  # converted only (ptq16x8)
    return (f"| {r.variant} | {r.description} | {train_ms} | {r.int8_ms:.2f} | "
            f"{r.size_kb:.1f} | {r.gzip_kb:.1f} | {r.macs / 1e6:.1f} | {r.params / 1e3:.0f} | "
            f"{r.mae_int8_mm:.2f} | {r.mae_float_mm:.2f} | {notes} |")


def table(results) -> str:
    head = ("| variant | what | train ms/step | int8 ms | size KB | gzip KB | M MACs | k params | "
            "MAE int8 mm | MAE float mm | notes |")
    return "\n".join([head, "|" + "---|" * 11, *map(_row, results)]) + "\n"


def pareto(results) -> list:
    """Rows no other row beats on both int8 ms and int8 MAE."""
    return [r for r in results if not any(o.int8_ms <= r.int8_ms and o.mae_int8_mm <= r.mae_int8_mm and
                                          (o.int8_ms, o.mae_int8_mm) != (r.int8_ms, r.mae_int8_mm)
                                          for o in results)]


def winner_paragraph(results, steps: int) -> str:
    ok = [r for r in results if np.isfinite(r.mae_int8_mm)]
    if not ok:
        return "No variant produced a finite int8 MAE."
    by = {r.variant: r for r in ok}
    best = min(ok, key=lambda r: r.mae_int8_mm)
    out = [f"Lowest int8 MAE overall: **{best.variant}** ({best.mae_int8_mm:.2f} mm, {best.int8_ms:.2f} ms, "
           f"{best.macs / 1e6:.0f} M MACs)."]
    ref = by.get("student")
    if ref:
        same = [r for r in ok if r.ops == ref.ops and r.macs == ref.macs and not is_16x8(r.extra)]
        fast = [r for r in ok if r.int8_ms <= SLOWER_OK * ref.int8_ms or r in same]
        win = min(fast, key=lambda r: r.mae_int8_mm)
        verdict = ("the student itself: no compression method beat plain PTQ of the budgeted network"
                   if win.variant == "student" else
                   f"{ref.mae_int8_mm - win.mae_int8_mm:.2f} mm better than the student's "
                   f"{ref.mae_int8_mm:.2f} mm")
        out.append(f"**What wins** at the student's speed (int8 ≤ {SLOWER_OK:.2f} × its {ref.int8_ms:.2f} "
                   f"ms): **{win.variant}** ({win.mae_int8_mm:.2f} mm) — {verdict}.")
        small = min(ok, key=lambda r: r.gzip_kb)
        out.append(f"Smallest after gzip: {small.variant} ({small.gzip_kb:.0f} KB, "
                   f"{ref.gzip_kb / small.gzip_kb:.1f}× smaller than the student) at "
                   f"{small.mae_int8_mm - ref.mae_int8_mm:+.2f} mm MAE against it.")
        if len(same) > 1:
            spread = [r.int8_ms for r in same]
            out.append(f"Timer spread over the {len(same)} rows with the student's graph: {min(spread):.2f}–"
                       f"{max(spread):.2f} ms (the same int8 kernels: differences below this are noise).")
        if "teacher" in by:
            gap = ref.mae_int8_mm - by["teacher"].mae_int8_mm
            t = by["teacher"]
            out.append(f"Teacher vs student: {gap:+.2f} mm for {t.macs / max(ref.macs, 1):.1f}× the MACs and "
                       f"{t.int8_ms / ref.int8_ms:.1f}× the int8 time.")
            for v in ("kd", "kd_ie"):
                if v in by and gap > 0:
                    share, mae = (ref.mae_int8_mm - by[v].mae_int8_mm) / gap, by[v].mae_int8_mm
                    out.append(f"{v} closes {share:.0%} of that gap ({mae:.2f} mm)." if share > 0
                               else f"{v} closes none of it ({mae:.2f} mm).")
        if "qat" in by:
            out.append(f"QAT vs PTQ: {by['qat'].mae_int8_mm - ref.mae_int8_mm:+.2f} mm int8 MAE (float→int8 "
                       f"loss {ref.mae_int8_mm - ref.mae_float_mm:+.2f} mm with PTQ alone).")
        if "ptq16x8" in by:
            w = by["ptq16x8"]
            out.append(f"16×8 vs int8 PTQ of the same student: {w.mae_int8_mm - ref.mae_int8_mm:+.2f} mm MAE "
                       f"at {w.int8_ms / ref.int8_ms:.1f}× the time.")
    front = ", ".join(r.variant for r in sorted(pareto(ok), key=lambda r: r.int8_ms))
    out.append(f"Pareto front on (int8 ms, int8 MAE): {front}.")
    if steps < FEW_STEPS:
        out.append(f"Caveat: {steps} steps per variant is a pipeline check; rankings this short are mostly "
                   "noise.")
    return " ".join(out)


def plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    kb = np.array([r.size_kb for r in results])
    area = 30 + 400 * kb / max(kb.max(), 1)
    for ax, key, label in ((axes[0], "int8_ms", "int8 ms (1 thread, this machine, median)"),
                           (axes[1], "gzip_kb", "size after gzip, KB")):
        x = np.array([getattr(r, key) for r in results])
        y = np.array([r.mae_int8_mm for r in results])
        ax.scatter(x, y, s=area, alpha=0.55, c=np.arange(len(results)), cmap="tab10", edgecolors="k")
        for r, xi, yi in zip(results, x, y, strict=True):
            ax.annotate(r.variant, (xi, yi), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set(xscale="log", xlabel=label, ylabel="bona fide MAE int8, mm (shift-aligned)")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        # minor labels only within one decade, else they collide
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g") if x.max() < 10 * x.min()
                                     else matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3, which="both")
    front = sorted(pareto(results), key=lambda r: r.int8_ms)
    axes[0].plot([r.int8_ms for r in front], [r.mae_int8_mm for r in front], "k--", lw=0.8,
                 label="Pareto front")
    axes[0].legend(fontsize=8)
    axes[0].set_title("accuracy vs speed (marker area ∝ .tflite KB)", fontsize=10)
    axes[1].set_title("accuracy vs compressed size", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results, cfg, out_dir: Path, config_path: str = "") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(results, out_dir / f"{NAME}.png")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = f"python -m convert.study --config {config_path}" if config_path else "python -m convert.study"
    text = f"""# Compression study ({cfg.name})

Generated by `{cmd}` on {when} from source commit `{source_commit()}`, on {cpu_model()}
({platform.machine()}). Every row has the same dataset (`{cfg.dataset}`) and the same {cfg.steps} optimiser
steps of batch {cfg.batch_size}; a derived row (tucker, pruneNN, qat) is its parent's snapshot after
{cfg.steps - cfg.finetune_steps} steps plus {cfg.finetune_steps} steps of fine-tuning. int8 is full-integer
PTQ on {cfg.n_calib} validation crops; MAE is over the bona fide faces among the test split's first
{cfg.eval_samples or 'all'} samples (shift-aligned, true face mask).

![MAE vs int8 latency and size]({NAME}.png)

{table(results)}
{winner_paragraph(results, cfg.steps)}

Columns: *train ms/step* is the median optimiser step of that row's own training (fine-tuning for derived
rows; kd rows include the teacher's forward pass) on this machine; *int8 ms* the median of {cfg.bench_runs}
LiteRT invokes on 1 thread; *size* the .tflite, *gzip* after `gzip -9` (pruned zeros only shrink there);
*MACs* of the dense graph (pruned and binary rows are not cheaper for the int8 kernels); *MAE float* is
the Keras model before conversion. `packed_1bit_kb` is the binary row's file with its binarised kernels
stored at 1 bit. Timings on this AVX512-VNNI CPU do not transfer to a Cortex-A: compare ratios.

## Configuration

```yaml
{yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None).strip()}
```
"""
    path = out_dir / f"{NAME}.md"
    path.write_text(text)
    log.info("report: %s", path)
    return path

