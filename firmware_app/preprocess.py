"""THE crop: face box (+ eye keypoints) → square crop → 160×160 network input and the 80×80 output grid.

Shared by the device and by training (`train` imports this module; it imports only numpy and cv2).

Geometry. The crop is a square in the frame, centred on the face box, with side
`scale * max(box width, box height)`, rotated by the eye-line angle when eyes are given, so the face
is upright in the crop. An N×N grid over that square (N = 160 for the input, 80 for the depth output)
uses the OpenCV pixel-centre convention: grid pixel (u, v) covers the square's cell whose centre is

    frame = center + R(angle) @ ((u + 0.5, v + 0.5) * side / N - side / 2)

so the 160 input and the 80 grid cover exactly the same square and the 80 grid's pixel (g) sits at
input pixel 2g + 0.5.

Sampling. The input is bilinear. Pixels of the square outside the frame (a face at the frame's edge)
are filled as the bundle records (BORDERS): black, the frame's edge replicated, or that replicated
band blurred, the default; training shows the network all three. When the square is more than 2×
larger than the output, the frame region is first averaged down by an integer factor (cv2.INTER_AREA)
so bilinear sampling does not alias.
Depth and masks are resampled with nearest neighbour (no mixing across the face boundary) and are 0
outside the frame (0 = no depth / background).

Pixel values are not normalised here: the network takes RGB uint8 values as they are (as float 0..255
or int8 = value - 128 after quantisation) and rescales internally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

INPUT_SIZE = 160  # network input is INPUT_SIZE × INPUT_SIZE × 3, RGB
GRID_SIZE = 80  # depth / mask output grid over the same square
CROP_SCALE = 1.6  # crop side / max(face box w, h); the box is the 68 landmarks' extent
# How the crop fills where it runs past the frame (a face at the frame's edge), as run/bundle metadata
# names it → crop_square's edge mode. A black band there changed the relief score of edge faces by a
# median 13 % and their LLR by −2.7 (convert/bench_field.py); repeating the frame's edge pixels
# ("replicate") by 5–6 %, but its streaks read as texture: hair cut by the frame's top edge cost a real
# photograph 38–43 %. "replicate_blur" blurs the replicated band (Gaussian, BLUR_SIGMA of the crop side,
# chosen on synthetic faces), continuing the frame's colours without its detail: 4.0 % on synthetic edge
# faces and 21.5 % on that photograph with session 7's bundle. Bundles record their fill and keep it.
BORDERS = {"constant0": "black", "replicate": "replicate", "replicate_blur": "replicate_blur"}
BORDER = "replicate_blur"  # what new runs and bundles record
BLUR_SIGMA = 0.05  # replicate_blur's Gaussian sigma, as a share of the crop side (8 px at 160)


def fill_of(border: str) -> str:
    """The crop_square edge mode of a recorded border name; ValueError names the known ones."""
    try:
        return BORDERS[border]
    except KeyError:
        raise ValueError(f"unknown crop border {border!r} (known: {', '.join(BORDERS)})") from None


@dataclass(frozen=True, eq=False)
class CropTransform:
    """A square in the frame and its affine maps; build with `from_square` or `crop_transform`."""

    center: tuple[float, float]  # frame pixels x, y
    side: float  # frame pixels
    angle_deg: float  # rotation of the crop's x axis in the frame (image y down: clockwise positive)
    matrix: np.ndarray  # (2, 3) frame pixel → INPUT_SIZE crop pixel
    inverse: np.ndarray  # (2, 3) INPUT_SIZE crop pixel → frame pixel

    @classmethod
    def from_square(cls, center, side: float, angle_deg: float = 0.0) -> CropTransform:
        cx, cy = float(center[0]), float(center[1])
        inv = _square_to_frame(cx, cy, float(side), float(angle_deg), INPUT_SIZE)
        return cls((cx, cy), float(side), float(angle_deg), _invert(inv), inv)

    def affine(self, size: int) -> np.ndarray:
        """(2, 3) frame pixel → pixel of a size×size grid over the same square."""
        return _invert(self.affine_inverse(size))

    def affine_inverse(self, size: int) -> np.ndarray:
        """(2, 3) pixel of a size×size grid → frame pixel."""
        return _square_to_frame(*self.center, self.side, self.angle_deg, size)


def _square_to_frame(cx: float, cy: float, side: float, angle_deg: float, size: int) -> np.ndarray:
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    step = side / size
    offset = np.array([cx, cy]) + rot @ np.full(2, 0.5 * step - 0.5 * side)
    m = np.concatenate([rot * step, offset[:, None]], axis=1)
    m.setflags(write=False)
    return m


def _invert(m: np.ndarray) -> np.ndarray:
    out = cv2.invertAffineTransform(np.asarray(m, np.float64))
    out.setflags(write=False)
    return out


def eye_angle_deg(eyes) -> float:
    """Angle of the line from eyes[0] to eyes[1], wrapped to (-90°, 90°].

    eyes[0] is the eye on the image's left for an upright face (BlazeFace keypoint 0, iBUG 36-41).
    The wrap makes a swapped pair give the same crop instead of an upside-down one.
    """
    (x0, y0), (x1, y1) = np.asarray(eyes, np.float64)
    angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
    if angle > 90.0:
        angle -= 180.0
    elif angle <= -90.0:
        angle += 180.0
    return angle


def crop_transform(face_box, eyes=None, scale: float = CROP_SCALE) -> CropTransform:
    """Square crop centred on face_box (x0, y0, x1, y1), side scale·max(w, h), rotated by the eye line."""
    x0, y0, x1, y1 = (float(v) for v in face_box)
    side = scale * max(x1 - x0, y1 - y0, 1.0)
    angle = 0.0 if eyes is None else eye_angle_deg(eyes)
    return CropTransform.from_square(((x0 + x1) / 2, (y0 + y1) / 2), side, angle)


def _prescale(frame: np.ndarray, t: CropTransform, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Average the region under the square down by an integer factor k = floor(side/size) when k ≥ 2.

    Returns the (possibly smaller) image and its (2, 3) map image pixel → output pixel.
    """
    frame_to_out = t.affine(size)
    k = int(t.side / size)
    if k < 2:
        return frame, frame_to_out
    corners = cv2.transform(np.array([[[0, 0], [size, 0], [0, size], [size, size]]], np.float64),
                            t.affine_inverse(size))[0]
    h, w = frame.shape[:2]
    x0, y0 = (max(int(math.floor(v)) - k, 0) for v in corners.min(axis=0))
    x1, y1 = (int(math.ceil(v)) + k for v in corners.max(axis=0))
    x1, y1 = x0 + (min(x1, w) - x0) // k * k, y0 + (min(y1, h) - y0) // k * k
    if x1 <= x0 or y1 <= y0:  # square entirely off the frame
        return frame, frame_to_out
    roi = frame[y0:y1, x0:x1]
    small = cv2.resize(roi, ((x1 - x0) // k, (y1 - y0) // k), interpolation=cv2.INTER_AREA)
    # small pixel s ↔ frame pixel k·(s + 0.5) - 0.5 + origin (block centre)
    small_to_frame = np.array([[k, 0, 0.5 * k - 0.5 + x0], [0, k, 0.5 * k - 0.5 + y0], [0, 0, 1]])
    return small, np.asarray(frame_to_out) @ small_to_frame


_EDGES = {"black": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE,
          "replicate_blur": cv2.BORDER_REPLICATE}


def inside_frame(t: CropTransform, hw: tuple[int, int], size: int = INPUT_SIZE) -> np.ndarray:
    """(size, size) bool: grid pixels whose centre lies inside an (h, w) frame."""
    xy = grid_frame_coords(t, size)
    return (xy[..., 0] > -0.5) & (xy[..., 0] < hw[1] - 0.5) & (xy[..., 1] > -0.5) & (xy[..., 1] < hw[0] - 0.5)


def outside_share(t: CropTransform, hw: tuple[int, int], size: int = 20) -> float:
    """Share of the crop square past the edge of an (h, w) frame, i.e. filled (on a size×size grid)."""
    if not _runs_past(t, hw):  # the usual frame: its four corners settle it
        return 0.0
    return 1.0 - float(inside_frame(t, hw, size).mean())


def _runs_past(t: CropTransform, hw: tuple[int, int]) -> bool:
    """Whether the square reaches past an (h, w) frame (cheap: its four corners)."""
    corners = cv2.transform(np.array([[[0, 0], [1, 0], [0, 1], [1, 1]]], np.float64), t.affine_inverse(1))[0]
    x, y = corners[:, 0], corners[:, 1]
    return bool(min(x.min(), y.min()) < -0.5 or x.max() > hw[1] - 0.5 or y.max() > hw[0] - 0.5)


def _blur_outside(image: np.ndarray, inside: np.ndarray, sigma: float) -> np.ndarray:
    """The pixels outside the frame replaced by a blur of the replicated image, blended over ~2 px."""
    blurred = cv2.GaussianBlur(image, (0, 0), sigma)
    w = np.maximum(cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 2.0), inside)[..., None]
    return np.clip(w * image + (1 - w) * blurred + 0.5, 0, 255).astype(np.uint8)


def crop_square(frame: np.ndarray, t: CropTransform, size: int, edge: str = "black") -> np.ndarray:
    """The square t of the frame as a size×size image (area prescale, bilinear; outside the frame black,
    the frame's edge replicated, or that replicated band blurred: BORDERS)."""
    image, m = _prescale(frame, t, size)
    out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=_EDGES[edge],
                         borderValue=0)
    if edge == "replicate_blur" and _runs_past(t, frame.shape[:2]):
        out = _blur_outside(out, inside_frame(t, frame.shape[:2], size), BLUR_SIGMA * size)
    return out


def crop_input(frame_rgb: np.ndarray, t: CropTransform, edge: str = "black") -> np.ndarray:
    """(H, W, 3) uint8 frame → (160, 160, 3) uint8 network input."""
    return crop_square(frame_rgb, t, INPUT_SIZE, edge)


def crop_to_grid(array: np.ndarray, t: CropTransform, size: int = GRID_SIZE,
                 interpolation: int = cv2.INTER_NEAREST) -> np.ndarray:
    """Resample a frame-aligned array (depth, mask, image) onto the size×size grid; 0 outside the frame."""
    return cv2.warpAffine(array, t.affine(size), (size, size), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _apply(m: np.ndarray, xy) -> np.ndarray:
    xy = np.asarray(xy, np.float64)
    return xy @ m[:, :2].T + m[:, 2]


def grid_to_frame(xy, t: CropTransform, size: int = GRID_SIZE) -> np.ndarray:
    """(..., 2) grid pixel coordinates (x, y) → frame pixel coordinates."""
    return _apply(t.affine_inverse(size), xy)


def frame_to_grid(xy, t: CropTransform, size: int = GRID_SIZE) -> np.ndarray:
    """(..., 2) frame pixel coordinates (x, y) → grid pixel coordinates."""
    return _apply(t.affine(size), xy)


def grid_frame_coords(t: CropTransform, size: int = GRID_SIZE) -> np.ndarray:
    """(size, size, 2) frame x, y of every grid cell centre: where each depth value lies in the frame."""
    v, u = np.mgrid[0:size, 0:size]
    return grid_to_frame(np.stack([u, v], axis=-1), t, size)
