"""Contact sheets: frame | depth colour map | mask with landmarks, one row per sample."""

from __future__ import annotations

import cv2
import numpy as np

from train.synth.sample import MASK_FACE, Sample


def depth_colour(depth_mm: np.ndarray) -> np.ndarray:
    """Relief colour map over labelled pixels (near = warm), black elsewhere. RGB uint8."""
    valid = depth_mm > 0
    out = np.zeros((*depth_mm.shape, 3), np.uint8)
    if not valid.any():
        return out
    d = depth_mm[valid]
    lo, hi = np.percentile(d, 1), np.percentile(d, 99)
    norm = np.clip((hi - depth_mm) / max(hi - lo, 1e-3), 0, 1)
    colour = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[:, :, ::-1]
    out[valid] = colour[valid]
    return out


def mask_with_landmarks(sample: Sample) -> np.ndarray:
    out = (sample.rgb // 3).copy()
    out[sample.mask > 0] = (90, 90, 90)
    out[sample.mask == MASK_FACE] = (40, 140, 60)
    for (x, y), vis in zip(sample.landmarks_2d, sample.landmarks_visible):
        colour = (255, 255, 0) if vis else (255, 0, 0)
        cv2.circle(out, (int(round(x)), int(round(y))), 2, colour, -1)
    return out


def sample_row(sample: Sample, width: int = 320) -> np.ndarray:
    tiles = [sample.rgb, depth_colour(sample.depth_mm), mask_with_landmarks(sample)]
    h, w = sample.rgb.shape[:2]
    size = (width, int(h * width / w))
    row = np.hstack([cv2.resize(t, size, interpolation=cv2.INTER_AREA) for t in tiles])
    relief = sample.depth_mm[sample.mask == MASK_FACE]
    text = f"{sample.label} id {sample.identity} relief {np.ptp(relief) if relief.size else 0:.0f} mm"
    cv2.putText(row, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return row


def contact_sheet(samples: list[Sample], width: int = 320) -> np.ndarray:
    return np.vstack([sample_row(s, width) for s in samples])


def identity_grid(frames: list[np.ndarray], cols: int = 8, tile: int = 160) -> np.ndarray:
    tiles = [cv2.resize(f, (tile, tile), interpolation=cv2.INTER_AREA) for f in frames]
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    return np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])


def save_rgb(path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), rgb[:, :, ::-1]):
        raise OSError(f"could not write {path}")
