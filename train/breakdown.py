"""Bona fide MAE broken down by what the frame holds, to say where the error comes from:

- head pose, max(|yaw|, |pitch|) of the rendered head: the synthetic range is wide (yaw ±60°, pitch ±30°),
  a door camera mostly sees near-frontal faces;
- off-axis angle, between the camera's optical axis and the ray through the face box centre (from the
  sample's intrinsics): a face looking at a wide-angle camera from off its axis has a z-depth that
  ramps across it, and the square crop no longer shows where in the frame it was taken.

- distance, the face's median landmark depth: a far face is a small crop of few pixels.

Each table gives the shift-aligned MAE (the headline metric) and the plane-aligned one (shape without
tilt), over the whole face mask and over the inner face (hull of the 68 landmarks), and the amplitude
slope: a band where only the first grows is a band whose error is a tilt.

    breakdown(result.scores, index) -> {"head_pose": rows, "off_axis": rows, "distance": rows}
"""

from __future__ import annotations

import numpy as np

from train.synth.shards import ShardReader

HEAD_POSE_EDGES_DEG = (0.0, 15.0, 30.0, 45.0, 90.0)
OFF_AXIS_EDGES_DEG = (0.0, 5.0, 10.0, 20.0, 30.0, 90.0)
DISTANCE_EDGES_MM = (0.0, 500.0, 800.0, 1200.0, 2000.0, 1e9)
COLUMNS = (("mae_mm", "MAE mm"), ("mae_plane_mm", "plane-aligned MAE mm"),
           ("inner_mae_mm", "inner-face MAE mm"), ("inner_mae_plane_mm", "inner plane-aligned mm"),
           ("slope", "slope"))


def off_axis_deg(intrinsics: np.ndarray, box: np.ndarray) -> float:
    """Angle between the optical axis and the ray through the centre of box (x0, y0, x1, y1), degrees."""
    (fx, _, cx), (_, fy, cy) = intrinsics[0], intrinsics[1]
    u, v = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return float(np.degrees(np.arctan(np.hypot((u - cx) / fx, (v - cy) / fy))))


def breakdown(scores, index) -> dict[str, list[dict]]:
    """Rows per band of head pose and of off-axis angle, over the bona fide `scores` (train.evaluate)."""
    bona = [s for s in scores if s.label == "bona_fide"]
    # only the shards scored (one split), not the whole dataset: a ShardReader loads its shard whole
    readers = {f: ShardReader(index.root / f) for f in {s.shard for s in bona}}
    pose = [np.abs(readers[s.shard].pose_deg[s.index][:2]).max() for s in bona]
    axis = [off_axis_deg(readers[s.shard].intrinsics[s.index], readers[s.shard].face_box[s.index])
            for s in bona]
    dist = [float(np.median(readers[s.shard].landmarks_3d[s.index][:, 2])) for s in bona]
    return {"head_pose": _bands(bona, pose, HEAD_POSE_EDGES_DEG),
            "off_axis": _bands(bona, axis, OFF_AXIS_EDGES_DEG),
            "distance": _bands(bona, dist, DISTANCE_EDGES_MM)}


def _bands(scores, angles, edges) -> list[dict]:
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = [s for s, a in zip(scores, angles, strict=True) if lo <= a < hi]
        row = {"from": lo, "to": hi, "n": len(sel)}
        for key, _ in COLUMNS:
            values = np.array([getattr(s, key) for s in sel], np.float64)
            row[key] = float(np.nanmedian(values) if key == "slope" else np.nanmean(values)) \
                if np.isfinite(values).any() else float("nan")
        rows.append(row)
    return rows


def breakdown_markdown(tables: dict[str, list[dict]]) -> str:
    titles = {"head_pose": ("head pose max(abs yaw, abs pitch)", "°"),
              "off_axis": ("face off the optical axis", "°"), "distance": ("face distance", " mm")}
    out = []
    for key, rows in tables.items():
        title, unit = titles[key]
        out += [f"| {title} | " + " | ".join(h for _, h in COLUMNS) + " | n |",
                "|---" * (len(COLUMNS) + 2) + "|"]
        for r in rows:
            top = "∞" if r["to"] >= 1e8 else f"{r['to']:.0f}"
            cells = " | ".join(f"{r[k]:.2f}" for k, _ in COLUMNS)
            out.append(f"| {r['from']:.0f}–{top}{unit} | {cells} | {r['n']} |")
        out.append("")
    return "\n".join(out)
