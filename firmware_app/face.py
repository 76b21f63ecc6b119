"""The device's face detector: MediaPipe BlazeFace (short or full range) → boxes + 6 keypoints, frame pixels.

The model files come from `convert.mediapipe_assets` (face_detection_short_range.tflite, 128×128, faces
within ~2 m of a selfie camera, in practice ~70 cm of a 640×480 door camera; and
face_detection_full_range_sparse.tflite, 192×192, faces up to ~5 m). Which one a file is follows from its
input shape. The pre- and post-processing reproduce MediaPipe's FaceDetectionShortRange /
FaceDetectionFullRange graphs:

- ImageToTensor: the whole frame letterboxed into the model's square (aspect kept, centred, black
  border), RGB scaled to [-1, 1];
- SsdAnchors, fixed anchor size 1, equal consecutive strides merged into one grid. Short range: strides
  8, 16, 16, 16, aspect ratio 1 plus one interpolated-scale anchor per layer (16×16×2 + 8×8×6 = 896
  anchors). Full range: one layer of stride 4, no interpolated anchor (48×48 = 2304 anchors);
- TensorsToDetections: 16 regressors per anchor (box centre x, y, w, h, then 6 keypoints x, y), all
  divided by the input size and offset by the anchor centre; score = sigmoid(clip(logit, ±100)), kept
  if ≥ min_score (MediaPipe: 0.5 short range, 0.6 full range);
- NonMaxSuppression WEIGHTED, IoU > 0.3: each cluster becomes the score-weighted mean of its boxes and
  keypoints, with the cluster's best score;
- DetectionProjection: letterbox undone, so everything is in frame pixels. Boxes are not clipped to
  the frame.

Keypoints are the subject's: "right eye" is the person's right eye, on the image's left in an unmirrored
camera frame.

`face_like` rejects boxes whose keypoints cannot belong to a face seen from the front half (eyes not
side by side, nose and mouth not below them, points outside the box): BlazeFace's rare false boxes on
clothing or background texture fail it, real faces up to ±60° yaw pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from firmware_app.camera.base import is_rgb_frame
from firmware_app.tflite import make_interpreter

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear_tragion", "left_ear_tragion")
INPUT_SIZE = 128  # short range
STRIDES = (8, 16, 16, 16)  # short range
ASPECT_RATIOS = (1.0,)
ANCHOR_OFFSET = 0.5
COORD_SCALE = 128.0  # short range: x_scale = y_scale = w_scale = h_scale = the input size
SCORE_CLIP = 100.0
MIN_SCORE = 0.5
NMS_IOU = 0.3


@dataclass(frozen=True)
class BlazeFaceModel:
    """One BlazeFace variant: its input size and anchor layout (MediaPipe's graph options)."""

    name: str
    input_size: int
    strides: tuple[int, ...]
    interpolated_anchor: bool  # interpolated_scale_aspect_ratio > 0: one more anchor per layer
    min_score: float  # MediaPipe's min_score_thresh for this model


SHORT_RANGE = BlazeFaceModel("short_range", 128, STRIDES, True, 0.5)
FULL_RANGE = BlazeFaceModel("full_range", 192, (4,), False, 0.6)
MODELS = {m.name: m for m in (SHORT_RANGE, FULL_RANGE)}


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


def ssd_anchors(input_size: int = INPUT_SIZE, strides=STRIDES, interpolated: bool = True) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1] (x, y), in MediaPipe SsdAnchorsCalculator order; sizes are fixed to 1.

    Consecutive layers with the same stride share one grid; each such layer contributes
    len(ASPECT_RATIOS) anchors per cell, plus one when `interpolated` (interpolated_scale_aspect_ratio > 0).
    """
    per_layer = len(ASPECT_RATIOS) + (1 if interpolated else 0)
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


def decode(
    raw: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    min_score: float = MIN_SCORE,
    scale: float = COORD_SCALE,
):
    """Boxes (M, 4: x0, y0, x1, y1), keypoints (M, 6, 2), scores (M,) in [0, 1] tensor units; score ≥ min."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = scores >= min_score
    raw, anchor, scores = raw[keep].astype(np.float64), anchors[keep], scores[keep]
    centre = raw[:, 0:2] / scale + anchor
    half = 0.5 * raw[:, 2:4] / scale
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:16].reshape(-1, 6, 2) / scale + anchor[:, None, :]
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
    """BlazeFace short or full range (told apart by the file's input shape); build once, then `detect`."""

    def __init__(
        self,
        model_path: Path | str,
        num_threads: int = 1,
        min_score: float = MIN_SCORE,
        iou_threshold: float = NMS_IOU,
    ):
        self.min_score = min_score
        self.iou_threshold = iou_threshold
        self._interpreter = make_interpreter(model_path, num_threads)
        inp = self._interpreter.get_input_details()[0]
        sizes = {(1, m.input_size, m.input_size, 3): m for m in MODELS.values()}
        if tuple(inp["shape"]) not in sizes or inp["dtype"] != np.float32:
            raise ValueError(
                f"{model_path}: input {tuple(inp['shape'])} {inp['dtype']} is not BlazeFace's (short range "
                f"(1, 128, 128, 3) or full range (1, 192, 192, 3) float32); use "
                f"face_detection_short_range.tflite or face_detection_full_range_sparse.tflite"
            )
        self.model = sizes[tuple(inp["shape"])]
        self.anchors = ssd_anchors(self.model.input_size, self.model.strides, self.model.interpolated_anchor)
        self._input = inp["index"]
        outs = {int(d["shape"][-1]): d for d in self._interpreter.get_output_details()}
        n = len(self.anchors)
        if set(outs) != {16, 1} or any(int(d["shape"][1]) != n for d in outs.values()):
            shapes = [tuple(d["shape"]) for d in outs.values()]
            shapes = ", ".join(str(tuple(int(v) for v in s)) for s in shapes)
            raise ValueError(
                f"{model_path}: outputs {shapes} are not BlazeFace {self.model.name}'s (1, {n}, 16) and "
                f"(1, {n}, 1); use face_detection_short_range.tflite or "
                "face_detection_full_range_sparse.tflite"
            )
        self._regressors, self._scores = outs[16]["index"], outs[1]["index"]

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        """Faces in an (H, W, 3) uint8 RGB frame, best score first."""
        if not is_rgb_frame(frame_rgb):
            got = getattr(frame_rgb, "shape", type(frame_rgb).__name__), getattr(frame_rgb, "dtype", "")
            raise ValueError(f"FaceDetector.detect needs an (H, W, 3) uint8 RGB frame, got {got[0]} {got[1]}")
        size = self.model.input_size
        letterbox = Letterbox.for_frame(*frame_rgb.shape[:2], size)
        tensor = letterbox.apply(frame_rgb).astype(np.float32) * (2.0 / 255.0) - 1.0
        self._interpreter.set_tensor(self._input, tensor[None])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._regressors)[0]
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        boxes, keypoints, scores = decode(raw, logits, self.anchors, self.min_score, float(size))
        faces = []
        for box, kps, score in weighted_nms(boxes, keypoints, scores, self.iou_threshold):
            (x0, y0), (x1, y1) = letterbox.to_frame(box.reshape(2, 2))
            points = tuple((float(x), float(y)) for x, y in letterbox.to_frame(kps))
            faces.append(Face(float(x0), float(y0), float(x1), float(y1), score, points))
        return faces


def face_like(face: Face) -> bool:
    """Whether the keypoints have a face's layout, in box units (x right, y down; a door camera's faces
    are upright within ~30° of roll).

    All of eyes, nose and mouth within the box grown by a quarter of its size; the subject's right eye
    left of the left eye and apart by 5–80% of the box width; the mouth below both eyes by 5% of the box
    height, the nose not far above the higher eye (a raised chin; a far face's keypoints are coarse) and
    not below the mouth. Profiles up to ~60° yaw (eyes close together, nose at the box edge) pass; false
    boxes on texture rarely do.
    """
    w, h = face.x1 - face.x0, face.y1 - face.y0
    if not (w > 0 and h > 0):
        return False
    k = (face.keypoint_array[:4].astype(np.float64) - [face.x0, face.y0]) / [w, h]
    (rx, ry), (lx, ly), (nx, ny), (mx, my) = k
    return bool(
        ((k > -0.25) & (k < 1.25)).all()
        and 0.05 <= lx - rx <= 0.8
        and my > max(ry, ly) + 0.05
        and min(ry, ly) - 0.1 < ny < my + 0.05
    )
