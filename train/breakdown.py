"""Bona fide MAE broken down by what the frame holds, to say where the error comes from:

- head pose, max(|yaw|, |pitch|) of the rendered head: the synthetic range is wide (yaw ±60°, pitch ±30°),
  a door camera mostly sees near-frontal faces;
- off-axis angle, between the camera's optical axis and the ray through the face box centre (from the
  sample's intrinsics): a face looking at a wide-angle camera from off its axis has a z-depth that
  ramps across it, and the square crop no longer shows where in the frame it was taken.

Both tables give the shift-aligned MAE (the headline metric) and the plane-aligned one (shape without
tilt): a band where only the first grows is a band whose error is a tilt.

    breakdown(result.scores, index) -> {"head_pose": rows, "off_axis": rows};  breakdown_markdown(tables)
"""

from __future__ import annotations

import numpy as np

from train.synth.shards import ShardReader

HEAD_POSE_EDGES_DEG = (0.0, 15.0, 30.0, 45.0, 90.0)
OFF_AXIS_EDGES_DEG = (0.0, 5.0, 10.0, 20.0, 30.0, 90.0)


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
    return {"head_pose": _bands(bona, pose, HEAD_POSE_EDGES_DEG),
            "off_axis": _bands(bona, axis, OFF_AXIS_EDGES_DEG)}


def _bands(scores, angles, edges) -> list[dict]:
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = [s for s, a in zip(scores, angles, strict=True) if lo <= a < hi]
        mae, plane = ([getattr(s, k) for s in sel] for k in ("mae_mm", "mae_plane_mm"))
        rows.append({"from_deg": lo, "to_deg": hi, "n": len(sel),
                     "mae_mm": float(np.mean(mae)) if sel else float("nan"),
                     "mae_plane_mm": float(np.mean(plane)) if sel else float("nan")})
    return rows


def breakdown_markdown(tables: dict[str, list[dict]]) -> str:
    titles = {"head_pose": "head pose max(abs yaw, abs pitch)", "off_axis": "face off the optical axis"}
    out = []
    for key, rows in tables.items():
        out += [f"| {titles[key]} | bona fide MAE mm | plane-aligned MAE mm | n |", "|---|---|---|---|"]
        out += [f"| {r['from_deg']:.0f}–{r['to_deg']:.0f}° | {r['mae_mm']:.2f} | {r['mae_plane_mm']:.2f} | "
                f"{r['n']} |" for r in rows]
        out.append("")
    return "\n".join(out)
