"""The device's face detector: MediaPipe BlazeFace short range (128×128) → boxes + 6 keypoints, frame pixels.

The model file comes from `convert.mediapipe_assets` (face_detection_short_range.tflite). The pre- and
post-processing reproduce MediaPipe's FaceDetectionShortRange graph:

- ImageToTensor: the whole frame letterboxed into 128×128 (aspect kept, centred, black border),
  RGB scaled to [-1, 1];
- SsdAnchors: strides 8, 16, 16, 16, aspect ratio 1 plus one interpolated-scale anchor per layer, equal
  consecutive strides merged into one grid (16×16×2 + 8×8×6 = 896 anchors), fixed anchor size 1;
- TensorsToDetections: 16 regressors per anchor (box centre x, y, w, h, then 6 keypoints x, y), all
  divided by 128 and offset by the anchor centre; score = sigmoid(clip(logit, ±100)), kept if ≥ 0.5;
- NonMaxSuppression WEIGHTED, IoU > 0.3: each cluster becomes the score-weighted mean of its boxes and
  keypoints, with the cluster's best score;
- DetectionProjection: letterbox undone, so everything is in frame pixels. Boxes are not clipped to
  the frame.

Keypoints are the subject's: "right eye" is the person's right eye, on the image's left in an unmirrored
camera frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from firmware_app.camera.base import is_rgb_frame
from firmware_app.tflite import make_interpreter

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear_tragion", "left_ear_tragion")
INPUT_SIZE = 128
STRIDES = (8, 16, 16, 16)
ASPECT_RATIOS = (1.0,)
INTERPOLATED_SCALE_ASPECT_RATIO = 1.0  # > 0 adds one anchor per layer
ANCHOR_OFFSET = 0.5
COORD_SCALE = 128.0  # x_scale = y_scale = w_scale = h_scale
SCORE_CLIP = 100.0
MIN_SCORE = 0.5
NMS_IOU = 0.3


@dataclass(frozen=True)
class Face:
    """One detected face, in frame pixels."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    keypoints: tuple[tuple[float, float], ...]  # 6 (x, y), in KEYPOINT_NAMES order

    @property
    def box(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.x1, self.y1], np.float32)

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1))

    @property
    def keypoint_array(self) -> np.ndarray:
        return np.array(self.keypoints, np.float32)

    def keypoint(self, name: str) -> tuple[float, float]:
        return self.keypoints[KEYPOINT_NAMES.index(name)]


def ssd_anchors(input_size: int = INPUT_SIZE, strides=STRIDES) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1] (x, y), in MediaPipe SsdAnchorsCalculator order; sizes are fixed to 1.

    Consecutive layers with the same stride share one grid; each such layer contributes
    len(ASPECT_RATIOS) anchors per cell, plus one when INTERPOLATED_SCALE_ASPECT_RATIO > 0.
    """
    per_layer = len(ASPECT_RATIOS) + (1 if INTERPOLATED_SCALE_ASPECT_RATIO > 0 else 0)
    centres, layer = [], 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        cells = int(np.ceil(input_size / strides[layer]))
        y, x = np.mgrid[0:cells, 0:cells]
        grid = (np.stack([x, y], -1).reshape(-1, 2) + ANCHOR_OFFSET) / cells
        centres.append(np.repeat(grid, per_layer * (last - layer), axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float32)


def decode(raw: np.ndarray, logits: np.ndarray, anchors: np.ndarray, min_score: float = MIN_SCORE):
    """Boxes (M, 4: x0, y0, x1, y1), keypoints (M, 6, 2), scores (M,) in [0, 1] tensor units; score ≥ min."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = scores >= min_score
    raw, anchor, scores = raw[keep].astype(np.float64), anchors[keep], scores[keep]
    centre = raw[:, 0:2] / COORD_SCALE + anchor
    half = 0.5 * raw[:, 2:4] / COORD_SCALE
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:16].reshape(-1, 6, 2) / COORD_SCALE + anchor[:, None, :]
    return boxes, keypoints, scores


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) x0, y0, x1, y1 box with each of (M, 4) boxes."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU
):
    """MediaPipe's WEIGHTED suppression: [(box, keypoints, score)], best first.

    The best remaining box gathers every remaining box with IoU > threshold (itself included) and is
    replaced by their score-weighted mean box and keypoints; it keeps its own score.
    """
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        best = order[0]
        overlap = iou(boxes[best], boxes[order]) > iou_threshold
        overlap[0] = True  # a degenerate (zero-area) box still leaves the queue
        members, order = order[overlap], order[~overlap]
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(0) / w.sum()
        kps = (keypoints[members] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, kps, float(scores[best])))
    return out


@dataclass(frozen=True)
class Letterbox:
    """The frame resized by (sx, sy) and placed at (pad_x, pad_y) in the square tensor."""

    sx: float
    sy: float
    pad_x: float
    pad_y: float
    size: int = INPUT_SIZE

    @classmethod
    def for_frame(cls, height: int, width: int, size: int = INPUT_SIZE) -> Letterbox:
        s = size / max(height, width)
        w, h = max(1, round(width * s)), max(1, round(height * s))
        return cls(w / width, h / height, float((size - w) // 2), float((size - h) // 2), size)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """(size, size, 3) uint8: the frame resized (area-averaged) into a black square."""
        h, w = frame.shape[:2]
        rw, rh = round(w * self.sx), round(h * self.sy)
        resized = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_AREA if rw < w else cv2.INTER_LINEAR)
        out = np.zeros((self.size, self.size, 3), np.uint8)
        x, y = int(self.pad_x), int(self.pad_y)
        out[y : y + rh, x : x + rw] = resized
        return out

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) tensor coordinates in [0, 1] → frame pixels."""
        p = np.asarray(points, np.float64) * self.size
        return np.stack([(p[..., 0] - self.pad_x) / self.sx, (p[..., 1] - self.pad_y) / self.sy], -1)


class FaceDetector:
    """BlazeFace short range; build once, then `detect(frame_rgb)` per frame."""

    def __init__(
        self,
        model_path: Path | str,
        num_threads: int = 1,
        min_score: float = MIN_SCORE,
        iou_threshold: float = NMS_IOU,
    ):
        self.min_score = min_score
        self.iou_threshold = iou_threshold
        self.anchors = ssd_anchors()
        self._interpreter = make_interpreter(model_path, num_threads)
        inp = self._interpreter.get_input_details()[0]
        if tuple(inp["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3) or inp["dtype"] != np.float32:
            raise ValueError(
                f"{model_path}: input {tuple(inp['shape'])} {inp['dtype']} is not BlazeFace short "
                f"range's (1, 128, 128, 3) float32; use face_detection_short_range.tflite"
            )
        self._input = inp["index"]
        outs = {int(d["shape"][-1]): d for d in self._interpreter.get_output_details()}
        n = len(self.anchors)
        if set(outs) != {16, 1} or any(int(d["shape"][1]) != n for d in outs.values()):
            shapes = [tuple(d["shape"]) for d in outs.values()]
            raise ValueError(f"{model_path}: outputs {shapes}, expected (1, {n}, 16) and (1, {n}, 1)")
        self._regressors, self._scores = outs[16]["index"], outs[1]["index"]

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        """Faces in an (H, W, 3) uint8 RGB frame, best score first."""
        if not is_rgb_frame(frame_rgb):
            got = getattr(frame_rgb, "shape", type(frame_rgb).__name__), getattr(frame_rgb, "dtype", "")
            raise ValueError(f"FaceDetector.detect needs an (H, W, 3) uint8 RGB frame, got {got[0]} {got[1]}")
        letterbox = Letterbox.for_frame(*frame_rgb.shape[:2])
        tensor = letterbox.apply(frame_rgb).astype(np.float32) * (2.0 / 255.0) - 1.0
        self._interpreter.set_tensor(self._input, tensor[None])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._regressors)[0]
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        boxes, keypoints, scores = decode(raw, logits, self.anchors, self.min_score)
        faces = []
        for box, kps, score in weighted_nms(boxes, keypoints, scores, self.iou_threshold):
            (x0, y0), (x1, y1) = letterbox.to_frame(box.reshape(2, 2))
            points = tuple((float(x), float(y)) for x, y in letterbox.to_frame(kps))
            faces.append(Face(float(x0), float(y0), float(x1), float(y1), score, points))
        return faces
