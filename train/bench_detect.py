"""Face detection from 30 cm to 2 m on bona fide synthetic frames: short range vs the configured search.

    python -m train.bench_detect [--n 200] [--seed 0] [--min-distance 300] [--max-distance 2000] [--tiles 2]
                                 [--hold 0]
                                 [--grey] [--json out/bench/detect.json]

Renders N bona fide 640×480 frames (train.synth GeneratorConfig(distance_mm=(min_distance, max_distance)):
300 mm-2 m by default; a band alone, e.g. --min-distance 1500, to sample the far faces more densely), one
identity per frame; with --grey each frame as a `camera.colour: grey` camera delivers it) and runs on each:

- short_range: BlazeFace short range on the whole frame, as the daemon did before (no keypoint check);
- full_range: BlazeFace full range on the whole frame, face-like keypoints only;
- search: full range through `firmware_app.face_search.FaceFinder` (whole frame + region around the
  last face + one 2×2 tile per frame while no face is known). Each frame is shown `hold` times in a row
  (a still person) after a reset, so the tiles get their turn; "found" = the face is
  found on the last of them, "1st" = already on the first.

A detection matches when its IoU with the 68-landmark box is ≥ 0.3 or its centre lies inside it
(train.synth.realism.match); every other box counts as false. Rates are printed by distance band
(camera → eye centre), with the per-frame cost (detector calls and ms, 1 thread, this machine) and how
well each model's box predicts the 68-landmark extent (the crop contract, pipeline.landmark_box).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from firmware_app.face import Face, FaceDetector, face_like
from firmware_app.face_search import FaceFinder, SearchConfig
from train.synth.realism import EYES, match

GOAL = 0.95
MIN_DISTANCE_MM = 300.0
BAND_EDGES_MM = (300.0, 500.0, 700.0, 1000.0, 1500.0, 2000.0)
PROFILE_YAW = 40.0


@dataclass(frozen=True)
class Rendered:
    rgb: np.ndarray
    face_box: np.ndarray  # 68-landmark extent, x0, y0, x1, y1
    distance_mm: float
    eyes: np.ndarray  # (2, 2) centres of the subject's right and left eye landmarks
    yaw: float  # head yaw, degrees


@dataclass(frozen=True)
class Outcome:
    distance_mm: float
    yaw: float
    found: bool
    first: bool  # found on the first frame it was shown
    false_boxes: int
    calls: float  # detector invocations per frame
    ms: float  # per frame
    box: tuple[float, ...] | None  # the matching detection's box


def render(n: int, seed: int, max_distance: float, progress: bool = False,
           min_distance: float = MIN_DISTANCE_MM) -> list[Rendered]:
    from train.synth.face_render import make_identity
    from train.synth.generator import GeneratorConfig, generate_sample
    from train.synth.sample import BONA_FIDE

    cfg = GeneratorConfig(distance_mm=(float(min_distance), float(max_distance)))
    out, start = [], time.perf_counter()
    for i in range(n):
        identity = make_identity(i, np.random.default_rng([seed, i, 1]))
        s = generate_sample(cfg, identity, BONA_FIDE, np.random.default_rng([seed, i, 2]))
        eyes = np.stack([s.landmarks_2d[36:42].mean(0), s.landmarks_2d[42:48].mean(0)])
        distance = float(np.linalg.norm(s.landmarks_3d[EYES].mean(axis=0)))
        out.append(Rendered(s.rgb, np.asarray(s.face_box, np.float64), distance, eyes, float(s.pose_deg[0])))
        if progress and ((i + 1) % 25 == 0 or i + 1 == n):
            rate = (i + 1) / (time.perf_counter() - start)
            eta = (n - i - 1) / rate
            print(f"  rendered {i + 1}/{n}, {rate:.1f} frames/s, ETA {eta:.0f} s", file=sys.stderr)
    return out


def _outcome(frame: Rendered, faces: list[Face], first: bool | None, calls: float, ms: float) -> Outcome:
    k, _ = match(faces, frame.face_box)
    found = k is not None
    box = tuple(float(v) for v in faces[k].box) if found else None
    first = found if first is None else first
    return Outcome(frame.distance_mm, frame.yaw, found, first, len(faces) - found, calls, ms, box)


def run_plain(detector: FaceDetector, frames: list[Rendered], check_keypoints: bool) -> list[Outcome]:
    out = []
    for f in frames:
        t = time.perf_counter()
        faces = detector.detect(f.rgb)
        if check_keypoints:
            faces = [x for x in faces if face_like(x)]
        out.append(_outcome(f, faces, None, 1.0, 1000 * (time.perf_counter() - t)))
    return out


def run_search(finder: FaceFinder, frames: list[Rendered], hold: int) -> list[Outcome]:
    out = []
    for f in frames:
        finder.reset()
        calls0, t = finder.calls, time.perf_counter()
        first = None
        for j in range(hold):
            faces = finder.detect(f.rgb)
            if j == 0:
                first = match(faces, f.face_box)[0] is not None
        ms = 1000 * (time.perf_counter() - t) / hold
        out.append(_outcome(f, faces, first, (finder.calls - calls0) / hold, ms))
    return out


def band_of(distance: float) -> int:
    edges = BAND_EDGES_MM
    return int(np.clip(np.searchsorted(edges, distance, side="right") - 1, 0, len(edges) - 2))


def band_table(outcomes: list[Outcome]) -> list[dict]:
    rows = []
    for b in range(len(BAND_EDGES_MM) - 1):
        sel = [o for o in outcomes if band_of(o.distance_mm) == b]
        rows.append({
            "band_mm": [BAND_EDGES_MM[b], BAND_EDGES_MM[b + 1]],
            "frames": len(sel),
            "found": sum(o.found for o in sel),
            "first": sum(o.first for o in sel),
            "false_boxes": sum(o.false_boxes for o in sel),
        })  # fmt: skip
    return rows


def box_fit(frames: list[Rendered], outcomes: list[Outcome]) -> dict:
    """68-landmark extent vs the detector box, eye-aligned, in box widths (pipeline.py's BOX_OFFSET/SIDE)."""
    offs, sides = [], []
    for f, o in zip(frames, outcomes, strict=True):
        if o.box is None:
            continue
        x0, y0, x1, y1 = o.box
        w = x1 - x0
        d = f.eyes[1] - f.eyes[0]
        a = np.arctan2(d[1], d[0])
        rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # frame → eye-aligned
        c68 = 0.5 * (f.face_box[:2] + f.face_box[2:])
        offs.append(rot @ (c68 - [0.5 * (x0 + x1), 0.5 * (y0 + y1)]) / w)
        sides.append(max(f.face_box[2] - f.face_box[0], f.face_box[3] - f.face_box[1]) / w)
    if not offs:
        return {}
    offs_a = np.array(offs)
    return {
        "n": len(offs),
        "offset": [round(float(v), 3) for v in np.median(offs_a, 0)],
        "offset_std": [round(float(v), 3) for v in offs_a.std(0)],
        "side": round(float(np.median(sides)), 3),
        "side_std": round(float(np.std(sides)), 3),
    }


def format_report(name: str, outcomes: list[Outcome], fit: dict, hold: int | None) -> list[str]:
    rows = band_table(outcomes)
    ms = statistics.median(o.ms for o in outcomes)
    calls = statistics.mean(o.calls for o in outcomes)
    how = f", each frame held {hold}×" if hold else ""
    lines = [f"{name}{how}: {calls:.2f} detector calls and {ms:.1f} ms per frame (median, 1 thread)"]
    for r in rows:
        n = r["frames"]
        rate = r["found"] / n if n else float("nan")
        mark = "ok" if n and rate >= GOAL else "BELOW" if n else "-"
        first = f"  1st frame {100 * r['first'] / n:5.1f}%" if hold and n else ""
        lines.append(
            f"  {r['band_mm'][0]:4.0f}-{r['band_mm'][1]:4.0f} mm  {r['found']:4d}/{n:<4d} "
            f"{100 * rate:5.1f}% {mark:5s}{first}  false boxes {r['false_boxes']}"
        )
    misses = [o for o in outcomes if not o.found]
    if misses:
        turned = sum(abs(o.yaw) >= PROFILE_YAW for o in misses)
        share = sum(abs(o.yaw) >= PROFILE_YAW for o in outcomes) / len(outcomes)
        lines.append(f"  misses: {len(misses)}, of which {turned} with |yaw| ≥ {PROFILE_YAW:.0f}° "
                     f"({100 * share:.0f}% of all frames are)")
    if fit:
        lines.append(
            f"  box → 68-landmark extent (eye-aligned, × box width, n={fit['n']}): centre "
            f"{fit['offset']} (std {fit['offset_std']}), side {fit['side']} (std {fit['side_std']})"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.bench_detect", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="bona fide frames (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-distance", type=float, default=MIN_DISTANCE_MM,
                        help="mm (default: %(default)s)")
    parser.add_argument("--max-distance", type=float, default=2000.0, help="mm (default: %(default)s)")
    parser.add_argument("--hold", type=int, default=0, help="frames each still face is shown to the search "
                        "(default: enough for every tile, tiles² / tiles-per-frame)")
    parser.add_argument("--tiles", type=int, default=SearchConfig.tiles, help="tile grid side (default: 2)")
    parser.add_argument("--tiles-per-frame", type=int, default=SearchConfig.tiles_per_frame)
    parser.add_argument("--propose-score", type=float, default=SearchConfig.propose_score,
                        help="boxes scoring this much are looked at closer on the next frame (default: 0.3)")
    parser.add_argument("--grey", action="store_true", help="frames as a mono camera delivers them "
                        "(camera.colour: grey)")
    parser.add_argument("--json", type=Path, default=Path("out/bench/detect.json"))
    args = parser.parse_args(argv)
    if (args.n < 1 or args.hold < 0 or args.tiles_per_frame < 1 or args.min_distance < MIN_DISTANCE_MM
            or args.max_distance <= args.min_distance):
        parser.error(f"need --n, --tiles-per-frame ≥ 1, --hold ≥ 0, {MIN_DISTANCE_MM:.0f} ≤ --min-distance < "
                     "--max-distance")
    search = SearchConfig(tiles=args.tiles, tiles_per_frame=args.tiles_per_frame,
                          propose_score=args.propose_score)
    hold = args.hold or max(1, -(-search.tiles**2 // search.tiles_per_frame))
    from convert.mediapipe_assets import ensure_mediapipe_models

    models = ensure_mediapipe_models()
    short = FaceDetector(models.face_detector, num_threads=1)
    full = FaceDetector(models.face_detector_full_range, num_threads=1)
    frames = render(args.n, args.seed, args.max_distance, progress=True, min_distance=args.min_distance)
    if args.grey:
        from firmware_app.camera.colour import to_grey3

        frames = [replace(f, rgb=to_grey3(f.rgb)) for f in frames]
    propose = search.propose_score
    finder = FaceFinder(FaceDetector(models.face_detector_full_range, 1, propose), search,
                        follower=FaceDetector(models.face_detector, 1, propose))  # fmt: skip
    runs = {
        "short_range (whole frame)": (run_plain(short, frames, False), None),
        "full_range (whole frame, face-like)": (run_plain(full, frames, True), None),
        f"search (full_range finds: frame + {search.tiles}x{search.tiles} tiles, "
        f"{search.tiles_per_frame}/frame; short_range follows: region)":
            (run_search(finder, frames, hold), hold),
    }  # fmt: skip
    print(f"bona fide synthetic frames{' (grey)' if args.grey else ''}, 640x480, "
          f"{args.min_distance:.0f}-{args.max_distance:.0f} mm, "
          f"seed {args.seed}, n={args.n}; goal ≥ {100 * GOAL:.0f}% per band")  # fmt: skip
    report = {"n": args.n, "seed": args.seed, "min_distance_mm": args.min_distance,
              "max_distance_mm": args.max_distance, "grey": args.grey,
              "runs": {}}
    for name, (outcomes, hold) in runs.items():
        fit = box_fit(frames, outcomes)
        print("\n".join(format_report(name, outcomes, fit, hold)))
        report["runs"][name] = {"bands": band_table(outcomes), "box_fit": fit,
                                "outcomes": [asdict(o) for o in outcomes]}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"per-frame outcomes → {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
