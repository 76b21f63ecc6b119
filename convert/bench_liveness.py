"""Door benchmark: synthetic door clips through the daemon's own pipeline; clip APCER/BPCER, time to decision.

    python -m convert.bench_liveness --bundle bundle/default --clips 300 [--config door.yaml]
                                                                        (make bench-liveness CLIPS=300)

Clips (train/synth/door_clip.py, identities and attack photos unseen in training): bona fide walking up
from ~2 m, standing, turning; every attack type hand-held and static, half of them showing a real
photograph (reported apart: "real-photo content", and per source). With --video, video-replay attack clips
instead (door_clip.video_plan: phones, tablets and monitors playing a head that turns, on a stand and
hand-held; "video content"), whose motion the motion cue cannot call planar; with --video --pan, the real
photographs zoomed into and panned over on the same screens ("panned real-photo content"), a plane's motion
inside a still screen. Each clip is replayed through the
replay camera into `Pipeline.from_bundle` (the daemon's detector, crop, depth, motion and liveness
stages, with the config's liveness settings), one fresh pipeline per clip; with --encode mp4v, from a
video file of the clip written with that lossy codec (convert/clip_video.py), as a recording would hold
it. Frame timestamps are the clip's own (frame / fps), so the decision's timeout runs in clip time, as on
a camera at --fps (10 frames/s by default), however fast this machine replays.

Per clip: an attack clip is accepted if any frame is decided `live` (clip APCER); a bona fide clip is
rejected if no `live` comes within `--window-s` (3 s) of the first frame with a detected face, or if
the face is never detected (clip BPCER); time to decision = frames from first detection to the live
decision / fps. Rates carry Wilson 95 % intervals; p50/p95 times carry distribution-free (order
statistic) 95 % intervals. Writes summary.json, trajectories.png (each clip's accumulated evidence
against clip time, with the bounds) and the rendered clips (reused when present) under --out.

    python -m convert.bench_liveness --replay out/bench/liveness/summary.json --config door.yaml

decides every clip again from the per-frame evidence that run recorded, with another config's decision
settings (min_mean_llr, min_face_px, the medium cue on or off, ...): a what-if in seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from convert.liveness import wilson
from firmware_app.camera import EndOfStream, Frame, make_camera
from firmware_app.config import CameraConfig, Config, load_config
from firmware_app.liveness import LIVE, DecisionParams, Score, TrackEvidence
from firmware_app.medium import MediumEdges, MediumModel
from firmware_app.motion import MotionEstimate
from firmware_app.pipeline import Pipeline, decision_params
from firmware_app.profiling import Profiler

log = logging.getLogger(__name__)


def quantile_ci(values, q: float) -> tuple[float, float, float]:
    """(estimate, low, high): the q-quantile and its 95 % order-statistic interval (NaN where n is short)."""
    from scipy.stats import binom

    x = np.sort(np.asarray(values, np.float64))
    n = len(x)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    lo, hi = int(binom.ppf(0.025, n, q)), int(binom.ppf(0.975, n, q)) + 1  # 1-based ranks
    est = float(np.quantile(x, q))
    return (est, float(x[lo - 1]) if lo >= 1 else math.nan, float(x[hi - 1]) if hi <= n else math.nan)


def run_clip(source: Path, bundle, cfg: Config, fps: float) -> dict:
    """Replay one clip (its folder of frames, or a video file) through a fresh pipeline; the per-frame
    trajectory and the decisions."""
    # pacing at the config's fastest rate: unpaced (a video file's 0 would mean its native rate)
    cam_cfg = replace(cfg.camera, type="replay", source=str(source), loop=False, fps=1000.0, hold_frames=1)
    cfg = replace(cfg, camera=cam_cfg)
    pipe = Pipeline.from_bundle(bundle, cfg, Profiler())
    camera = make_camera(cam_cfg)
    camera.open()
    traj, decisions, first_face, frame_llr, motion_llr, motion_shift, face_px = [], [], None, [], [], [], []
    medium, motion_r_hom, outside = [], [], []
    try:
        while True:
            try:
                frame = camera.read()
            except EndOfStream:
                break
            k = len(traj)
            r = pipe.process(Frame(frame.rgb, k / fps, k))  # clip time: the timeout counts as at `fps`
            if r.face is not None and first_face is None:
                first_face = k
            traj.append(r.liveness.llr if r.liveness else math.nan)
            lv = r.liveness
            frame_llr.append(lv.score.llr if lv and lv.score else math.nan)
            motion_llr.append(lv.motion.llr if lv and lv.motion and lv.motion.llr is not None else math.nan)
            motion_shift.append(float(lv.motion.shift) if lv and lv.motion else math.nan)
            motion_r_hom.append(float(lv.motion.r_hom) if lv and lv.motion else math.nan)
            face_px.append(float(r.face.box[2] - r.face.box[0]) if r.face is not None else math.nan)
            outside.append(r.crop.outside if r.crop is not None else math.nan)
            medium.append(lv.medium.edges.sides if lv and lv.medium else None)
            if r.decision:
                decisions.append({"frame": k, "decision": r.decision.decision, "track": r.decision.track_id,
                                  "llr": round(r.decision.llr, 3), "reason": r.decision.reason,
                                  "contributions": r.decision.contributions})
    finally:
        camera.close()
    return {"first_face": first_face, "decisions": decisions, "trajectory": traj, "frame_llr": frame_llr,
            "motion_llr": motion_llr, "motion_shift": motion_shift, "motion_r_hom": motion_r_hom,
            "face_px": face_px, "medium": medium, "outside": outside,
            "motion_ms": pipe.profiler.summary()["stages"].get("motion", {}).get("p50_ms")}


REPLAY_KEYS = ("fps", "clips_detail", "frame_llr", "motion_llr", "motion_shift_px", "motion_r_hom_px",
               "face_box_px", "medium_sides")  # what a run records that a replay reads


def replay_clip(rec: dict, name: str, params: DecisionParams, medium: MediumModel | None, fps: float) -> dict:
    """One clip's decisions again from the evidence a run recorded (summary.json, per frame: frame LLR,
    motion estimate, medium sides, face width, crop share past the frame edge), under other decision
    parameters: seconds instead of minutes, no rendering, no network. Exact for changes that can only
    decide sooner (a lower mean rule, a wider window) and for undecided tracks; motion and medium were
    recorded only until the run decided, so a stricter rule that decides later than the run did misses
    that later evidence (it adds nothing)."""
    frame_llr, motion_llr, shift, r_hom, face_px, sides = (rec[k][name] for k in (
        "frame_llr", "motion_llr", "motion_shift_px", "motion_r_hom_px", "face_box_px", "medium_sides"))
    outside = rec.get("crop_outside", {}).get(name) or [0.0] * len(face_px)  # not recorded before 2026-12-02
    first, track, decisions = None, None, []
    for k, px in enumerate(face_px):
        if not _finite(px):
            continue  # no face this frame
        if track is None:
            first, track = k, TrackEvidence(1, params, k / fps)
        llr = frame_llr[k]
        score = Score(math.nan, math.nan, 0, llr > 0, llr, {"frame": llr}) if _finite(llr) else None
        motion = None
        if _finite(shift[k]):
            judged = motion_llr[k] if _finite(motion_llr[k]) else None
            motion = MotionEstimate(judged, "" if judged is not None else "abstained", 0, shift[k], r_hom[k])
        medium_llr = medium.llr(MediumEdges(sides[k], 0)) if medium and sides[k] is not None else 0.0
        d = track.add(k / fps, score, motion, medium_llr, px, outside[k] if _finite(outside[k]) else 0.0)
        if d is not None:
            decisions.append({"frame": k, "decision": d.decision, "track": 1, "llr": round(d.llr, 3),
                              "reason": d.reason})
            break
    return {"first_face": first, "decisions": decisions}


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def replay(summary_path: Path, cfg: Config, bundle, window_s: float) -> dict:
    """The summary of every recorded clip decided again (ValueError: not a summary this can replay)."""
    try:
        rec = json.loads(summary_path.read_text())
        missing = [k for k in REPLAY_KEYS if k not in rec]
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"{summary_path}: not a door benchmark summary.json ({e})") from None
    if missing:
        raise ValueError(f"{summary_path}: not a door benchmark summary.json (no {', '.join(missing)}); "
                         "run python -m convert.bench_liveness to record one")
    lv, fps = cfg.liveness, float(rec["fps"])
    medium = MediumModel.from_manifest(getattr(bundle, "liveness", {}) or {}) if lv.medium else None
    rows = []
    for clip in rec["clips_detail"]:
        res = replay_clip(rec, clip["name"], decision_params(lv), medium, fps)
        kinds = [x["decision"] for x in res["decisions"]]
        outcome = kinds[0] if kinds else ("no face" if res["first_face"] is None else "none")
        rows.append({**{k: clip[k] for k in ("name", "label", "motion", "content")}, "outcome": outcome,
                     **clip_outcome(clip["label"], res, fps, window_s)})
    return summarise(rows, window_s)


def clip_outcome(label: str, res: dict, fps: float, window_s: float) -> dict:
    lives = [d["frame"] for d in res["decisions"] if d["decision"] == LIVE]
    k0 = res["first_face"]
    if label != "bona_fide":
        return {"error": bool(lives), "time_s": None}
    if k0 is None or not lives:
        return {"error": True, "time_s": None}
    t = (lives[0] - k0 + 1) / fps
    return {"error": t > window_s, "time_s": t}


def content_kind(content: str) -> str:
    """How a clip's content is reported: door_clip's RENDER, VIDEO, PAN + source, or a source's name."""
    if content.startswith("pan_"):
        return "panned real-photo"
    return {"render": "rendered", "video": "video"}.get(content, "real-photo")


def summarise(rows: list[dict], window_s: float) -> dict:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(f"{r['label']}/{r['motion']}", []).append(r)
        groups.setdefault(r["label"] if r["label"] == "bona_fide" else "attack (all)", []).append(r)
        if r["label"] != "bona_fide":  # the content: rendered, a real photograph (by source), or moving
            content = r.get("content", "render")
            kind = content_kind(content)
            groups.setdefault(f"attack ({kind} content)", []).append(r)
            if kind.endswith("real-photo"):
                groups.setdefault(f"attack (photo: {content})", []).append(r)
                groups.setdefault(f"{r['label']} ({kind} content)", []).append(r)
    out = {}
    for name, rs in sorted(groups.items()):
        k, n = sum(r["error"] for r in rs), len(rs)
        entry = {"clips": n, "errors": k, "rate": k / n, "wilson95": list(wilson(k, n)),
                 "metric": "BPCER" if name.startswith("bona_fide") else "APCER",
                 "outcomes": {o: sum(r["outcome"] == o for r in rs)
                              for o in sorted({r["outcome"] for r in rs})}}
        times = [r["time_s"] for r in rs if r["time_s"] is not None]
        if name.startswith("bona_fide"):
            entry["time_to_live_s"] = {"n": len(times), "p50": quantile_ci(times, 0.5),
                                       "p95": quantile_ci(times, 0.95)}
        out[name] = entry
    return out


def _s(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.2f}"


def report_text(summary: dict, window_s: float) -> str:
    lines = ["| clips | kind | clip error (95 % Wilson) | time to live p50 / p95 s (95 % CI) | outcomes |",
             "|---|---|---|---|---|"]
    for name, e in summary.items():
        lo, hi = e["wilson95"]
        t = e.get("time_to_live_s")
        ts = "" if not t else " / ".join(f"{_s(v[0])} [{_s(v[1])}, {_s(v[2])}]" for v in (t["p50"], t["p95"]))
        outcomes = ", ".join(f"{k} {v}" for k, v in e["outcomes"].items())
        lines.append(f"| {e['clips']} | {name} | {e['metric']} {e['errors']}/{e['clips']} = {e['rate']:.1%} "
                     f"[{lo:.1%}, {hi:.1%}] | {ts} | {outcomes} |")
    lines.append(f"clip APCER: any `live` in an attack clip; clip BPCER: no `live` within {window_s:g} s "
                 "of the first detected face (or never detected)")
    return "\n".join(lines)


def plot(rows: list[dict], results: dict, fps: float, bounds: tuple[float, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    colours = {"bona_fide": "tab:green", "print_flat": "tab:red", "print_bent": "tab:orange",
               "replay_phone": "tab:purple", "replay_tablet": "tab:brown", "replay_monitor": "tab:pink"}
    seen = set()
    for r in rows:
        y = np.array(results[r["name"]]["trajectory"], np.float64)
        t = np.arange(len(y)) / fps
        lab = r["label"] if r["label"] not in seen else None
        seen.add(r["label"])
        ax.plot(t, y, color=colours.get(r["label"], "grey"), alpha=0.6, lw=1,
                ls="-" if r["motion"] in ("handheld", "walk", "turn") else "--", label=lab)
    for b in bounds:
        ax.axhline(b, color="black", lw=0.8, ls=":")
    ax.set_xlabel("clip time (s)")
    ax.set_ylabel("accumulated evidence (LLR, + = bona fide)")
    ax.set_title("per-track evidence on door clips (dashed: static / standing)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.bench_liveness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=Path("bundle/default"))
    p.add_argument("--clips", type=int, default=300, help="number of door clips (cycling through every kind)")
    p.add_argument("--seconds", type=float, default=4.5)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window-s", type=float, default=3.0, help="a bona fide clip must be live within this")
    p.add_argument("--config", type=Path, help="device config whose liveness/detector settings to use")
    p.add_argument("--out", type=Path, default=Path("out/bench/liveness"))
    p.add_argument("--video", action="store_true",
                   help="video-replay attack clips instead (train/synth/door_clip.video_plan: screens "
                        "playing a head that turns, on a stand and hand-held)")
    p.add_argument("--pan", action="store_true",
                   help="with --video: the real photographs zoomed into and panned over instead of a head")
    p.add_argument("--encode", choices=("mp4v", "MJPG"),
                   help="replay each clip from a video file written with this codec (convert/clip_video.py): "
                        "what a recorded clip holds")
    p.add_argument("--replay", type=Path, metavar="SUMMARY",
                   help="decide again from a run's recorded evidence (its summary.json) with --config's "
                        "liveness settings: no clips, no network (see replay_clip for what is exact)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if a.pan and not a.video:
        print("error: --pan goes with --video (it pans real photographs on the video clips' screens)",
              file=sys.stderr)
        return 2
    if a.clips < 1 or a.fps <= 0 or a.seconds <= 0:
        print("error: --clips, --fps and --seconds must be positive", file=sys.stderr)
        return 2

    from convert.clip_video import EncodeError, encode_clip
    from firmware_app.bundle import BundleError, load_bundle
    from firmware_app.config_yaml import ConfigError
    from train.synth.door_clip import door_plan, render_door_clip, video_plan

    try:
        cfg = load_config(a.config) if a.config else Config(camera=CameraConfig(source="-"))
        bundle = load_bundle(a.bundle, None)  # a workstation tool: hashes checked, signature not required
    except (BundleError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.replay:
        if not a.replay.is_file():
            print(f"error: no recorded run at {a.replay} (run this benchmark without --replay first)",
                  file=sys.stderr)
            return 2
        try:
            summary = replay(a.replay, cfg, bundle, a.window_s)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(report_text(summary, a.window_s))
        print(f"replayed the evidence recorded in {a.replay} with {a.config or 'the default config'}")
        return 0
    rows, results, t0 = [], {}, time.monotonic()
    plan = video_plan(a.clips, a.seed, a.pan) if a.video else door_plan(a.clips, a.seed)
    for i, clip in enumerate(plan, start=1):
        d = a.out / "clips" / clip.name
        meta = d / "clip.json"
        frames = int(round(a.seconds * a.fps))
        if not (meta.is_file() and json.loads(meta.read_text()).get("frames") == frames):
            render_door_clip(d, clip, a.seconds, a.fps)
        try:
            source = encode_clip(d, a.encode, a.fps) if a.encode else d
        except EncodeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        res = results[clip.name] = run_clip(source, bundle, cfg, a.fps)
        o = clip_outcome(clip.label, res, a.fps, a.window_s)
        kinds = [x["decision"] for x in res["decisions"]]
        outcome = kinds[0] if kinds else ("no face" if res["first_face"] is None else "none")
        rows.append({"name": clip.name, "label": clip.label, "motion": clip.motion, "content": clip.content,
                     "outcome": outcome, **o})
        rate = i / (time.monotonic() - t0)
        after = f", live after {o['time_s']:.1f} s" if o["time_s"] else ""
        print(f"[{i}/{len(plan)}] {clip.name}: {outcome}{' ERROR' if o['error'] else ''}{after}  "
              f"({rate:.2f} clips/s, ETA {(len(plan) - i) / rate:.0f} s)", flush=True)
    summary = summarise(rows, a.window_s)
    lv = cfg.liveness
    bounds = (math.log(lv.bpcer_target), math.log(1 / lv.apcer_target))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "summary.json").write_text(json.dumps(
        {"bundle": str(a.bundle), "clips": a.clips, "fps": a.fps, "seconds": a.seconds, "seed": a.seed,
         "window_s": a.window_s, "encode": a.encode,
         "plan": ("pan" if a.pan else "video") if a.video else "door",
         "summary": summary, "clips_detail": rows,
         "decisions": {k: v["decisions"] for k, v in results.items()},
         # per frame: the frame's own LLR and the motion cue's (NaN: unscored / abstained / decided)
         "frame_llr": {k: [round(x, 3) for x in v["frame_llr"]] for k, v in results.items()},
         "motion_llr": {k: [round(x, 3) for x in v["motion_llr"]] for k, v in results.items()},
         "motion_shift_px": {k: [round(x, 3) for x in v["motion_shift"]] for k, v in results.items()},
         "motion_r_hom_px": {k: [round(x, 3) for x in v["motion_r_hom"]] for k, v in results.items()},
         "face_box_px": {k: [round(x, 1) for x in v["face_px"]] for k, v in results.items()},
         # per frame: the share of the crop past the frame edge
         "crop_outside": {k: [round(x, 3) for x in v["outside"]] for k, v in results.items()},
         # per frame: the sides of the face box with a medium-like edge (None: cue off or track decided)
         "medium_sides": {k: v["medium"] for k, v in results.items()}},
        indent=1, allow_nan=True) + "\n")
    try:
        plot(rows, results, a.fps, bounds, a.out / "trajectories.png")
    except ImportError:
        print("note: matplotlib is not installed: no trajectories.png")
    print(report_text(summary, a.window_s))
    print(f"wrote {a.out / 'summary.json'} and {a.out / 'trajectories.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
