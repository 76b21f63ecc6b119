"""Pictures of one pipeline result, for people: the depth colour map, the decision panel (saved with
decisions and by `predict`), and the live preview JPEG served at /preview.jpg."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from firmware_app.depth import DepthResult

if TYPE_CHECKING:  # pipeline imports this module for its Daemon
    from firmware_app.pipeline import FrameResult


def depth_colormap(depth: DepthResult, size: int = 160, face_prob: float = 0.5) -> np.ndarray:
    """(size, size, 3) RGB: relief as a TURBO colour map (near = red), black off the face."""
    mask = depth.face_prob > face_prob
    rel = depth.relief_mm
    lo, hi = np.percentile(rel[mask], [2, 98]) if mask.sum() > 3 else (rel.min(), rel.max())
    norm = np.clip((hi - rel) / max(hi - lo, 1e-3), 0, 1)  # smaller relief = nearer = hotter
    rgb = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    rgb = np.where(mask[..., None], rgb, 0).astype(np.uint8)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_NEAREST)


def decision_panel(result: FrameResult, threshold_mm: float) -> np.ndarray:
    """RGB panel: network input | depth colour map | verdict text (for predict and saved decisions)."""
    h = 160
    crop = result.crop.input if result.crop else np.zeros((h, h, 3), np.uint8)
    depth = depth_colormap(result.depth) if result.depth else np.zeros((h, h, 3), np.uint8)
    text = np.zeros((h, 200, 3), np.uint8)
    score = result.liveness.score if result.liveness else None
    verdict = (
        "no face"
        if result.face is None
        else "too little face"
        if score is None
        else ("LIVE" if score.live else "SPOOF")
    )
    colour = (0, 220, 0) if verdict == "LIVE" else (230, 40, 40) if verdict == "SPOOF" else (200, 200, 200)
    cv2.putText(text, verdict, (10, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.0, colour, 2, cv2.LINE_AA)
    if score:
        for i, line in enumerate(
            (
                f"score {score.score_mm:.1f} mm",
                f"threshold {threshold_mm:.1f} mm",
                f"face cells {score.face_cells}",
            )
        ):
            cv2.putText(
                text, line, (10, 90 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (220, 220, 220), 1, cv2.LINE_AA
            )
    return np.concatenate([crop, depth, text], axis=1)


def preview_panel(result: FrameResult, threshold_mm: float, height: int = 240) -> np.ndarray:
    """RGB panel for the live preview: the whole frame (face box drawn) | depth colour map | decision."""
    rgb = result.frame.rgb
    scale = height / rgb.shape[0]
    frame = cv2.resize(rgb, (max(int(round(rgb.shape[1] * scale)), 1), height), interpolation=cv2.INTER_AREA)
    if result.face is not None:
        x0, y0, x1, y1 = (int(round(float(v) * scale)) for v in result.face.face.box)
        cv2.rectangle(frame, (x0, y0), (x1, y1), (0, 220, 0), 2)
    panel = decision_panel(result, threshold_mm)[:, 160:]  # depth colour map | verdict text (160 high)
    pad = np.zeros((height - panel.shape[0], panel.shape[1], 3), np.uint8)
    return np.concatenate([frame, np.concatenate([panel, pad], axis=0)], axis=1)


def preview_jpeg(result: FrameResult, threshold_mm: float, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", preview_panel(result, threshold_mm)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
