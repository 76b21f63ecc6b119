"""Pictures of one pipeline result, for people: the depth colour map, the decision panel (saved with
decisions and by `predict`), the live preview JPEG served at /preview.jpg, and the live page's images.

Colours. `relief_colours` is THE depth colour map, used by every picture the project draws of the
device's depth: relief in mm (+ = nearer the camera) on a FIXED scale, `RELIEF_SCALE_MM` (the model's
relief range, the manifest's `relief_range_mm`), through TURBO with near = red and far = blue. The
scale is fixed, not stretched to each frame's own range, so a print (a few mm of relief) stays one
narrow band of colour and a face (nose to ears, tens of mm) spans the legend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from firmware_app.depth import DepthResult

if TYPE_CHECKING:  # daemon.py imports this module
    from firmware_app.pipeline import FrameResult

RELIEF_SCALE_MM = (-60.0, 40.0)  # far (blue) … near (red); the default bundle's relief_range_mm
GREY = (200, 200, 200)
VERDICT_COLOURS = {"live": (0, 220, 0), "spoof": (230, 40, 40), "undecided": (230, 170, 40)}  # RGB


def relief_colours(relief_mm: np.ndarray, scale: tuple[float, float] = RELIEF_SCALE_MM) -> np.ndarray:
    """Relief (mm, + = nearer) of any shape → RGB uint8 of that shape + (3,): near = red, far = blue."""
    lo, hi = scale
    norm = np.clip((np.asarray(relief_mm, np.float32) - lo) / (hi - lo), 0.0, 1.0)
    grey = np.round(norm * 255).astype(np.uint8).reshape(-1, 1)
    rgb = cv2.applyColorMap(grey, cv2.COLORMAP_TURBO)[:, 0, ::-1]  # TURBO: 0 = blue … 255 = red
    return rgb.reshape(*np.shape(relief_mm), 3)


def legend_stops(n: int = 11, scale: tuple[float, float] = RELIEF_SCALE_MM) -> list[tuple[float, str]]:
    """(mm, "#rrggbb") at n evenly spaced points of the scale, far first: the page's CSS legend."""
    mm = np.linspace(scale[0], scale[1], n)
    return [(float(v), "#" + bytes(c.tolist()).hex()) for v, c in zip(mm, relief_colours(mm), strict=True)]


def face_mask(depth: DepthResult, face_prob: float = 0.5) -> np.ndarray:
    return depth.face_prob > face_prob


def depth_colormap(depth: DepthResult, size: int = 160, face_prob: float = 0.5) -> np.ndarray:
    """(size, size, 3) RGB: relief through `relief_colours` (near = red, fixed scale), black off the face."""
    on_face = face_mask(depth, face_prob)[..., None]
    rgb = np.where(on_face, relief_colours(depth.relief_mm), 0).astype(np.uint8)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_NEAREST)


def depth_rgba(depth: DepthResult, face_prob: float = 0.5) -> np.ndarray:
    """(80, 80, 4) RGBA: the colour map with alpha 0 off the face (the live page's overlay and panel)."""
    alpha = np.where(face_mask(depth, face_prob), 255, 0).astype(np.uint8)
    return np.concatenate([relief_colours(depth.relief_mm), alpha[..., None]], axis=-1)


def verdict_label(result: FrameResult) -> tuple[str, tuple[int, int, int]]:
    """The panel's headline and its colour. LIVE / SPOOF / UNDECIDED only where the track decided (on this
    frame or before); a frame on its own only leans, because the door never decides live from one frame."""
    liveness = result.liveness
    if result.face is None:
        return "no face", GREY
    if liveness is None or liveness.score is None:
        return "too little face", GREY
    decided = liveness.decision.decision if liveness.decision else liveness.verdict
    if decided:
        return decided.upper(), VERDICT_COLOURS.get(decided, GREY)
    return ("leans live", (120, 180, 120)) if liveness.llr > 0 else ("leans spoof", (200, 120, 120))


def decision_panel(result: FrameResult, threshold_mm: float) -> np.ndarray:
    """RGB panel: network input | depth colour map | verdict text (for predict and saved decisions)."""
    h = 160
    crop = result.crop.input if result.crop else np.zeros((h, h, 3), np.uint8)
    depth = depth_colormap(result.depth) if result.depth else np.zeros((h, h, 3), np.uint8)
    text = np.zeros((h, 200, 3), np.uint8)
    score = result.liveness.score if result.liveness else None
    verdict, colour = verdict_label(result)
    cv2.putText(text, verdict, (10, 50), cv2.FONT_HERSHEY_SIMPLEX, 0.9, colour, 2, cv2.LINE_AA)
    if score:
        for i, line in enumerate(
            (
                f"score {score.score_mm:.1f} mm",
                f"threshold {threshold_mm:.1f} mm",
                f"face cells {score.face_cells}",
                f"evidence {result.liveness.llr:+.2f}",
            )
        ):
            cv2.putText(
                text, line, (10, 80 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (220, 220, 220), 1, cv2.LINE_AA
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
