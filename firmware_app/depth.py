"""The bundle's int8 depth network: interpreter built once; `predict()` quantises, invokes, dequantises.

Input "rgb" (1, 160, 160, 3) int8; the crop's uint8 pixels are quantised with the input tensor's own
scale/zero point (for the expected scale 1, zero point -128 that is pixel - 128, done as a bit flip).
Outputs are matched by their signature names ("bins", "relief", "live"), by shape when the file has no
signature: "bins" (1, 80, 80, K+1) int8 softmax whose last channel is the background, "relief"
(1, 80, 80, 1) int8 millimetres, and, in v2 models, "live" (1, 1) int8: the network's liveness logit
(+ = bona fide). Each is dequantised with its own scale/zero point. A model without "live" (v1) gives
`live_logit=None`.

Mirror averaging (the bundle's `crop.mirror_average`, off unless built with `--mirror-average`): the crop
and its horizontal mirror are both run and each output is averaged with the mirrored one flipped back
(`mirror_mean`), for twice the depth cost. The bundle's evidence is calibrated on the averaged outputs
(convert uses `mirror_mean` too), so the device must do the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_app.preprocess import GRID_SIZE, INPUT_SIZE
from firmware_app.tflite import make_interpreter

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class DepthResult:
    # (80, 80) float32 relative depth in mm along the camera axis; + = nearer the camera than the face median
    relief_mm: np.ndarray
    face_prob: np.ndarray  # (80, 80) float32 in [0, 1]: 1 - background probability
    live_logit: float | None = None  # the network's liveness logit (+ = bona fide); None for v1 models


class DepthModelError(ValueError):
    """A depth model this code cannot run; the message names the file and the problem."""


def _quant(details: dict) -> tuple[float, int]:
    scale, zero = details.get("quantization", (0.0, 0))
    return float(scale), int(zero)


def mirror_mean(direct: np.ndarray, mirrored: np.ndarray, x_axis: int) -> np.ndarray:
    """The mean of an output and the mirrored crop's output flipped back along the crop's x axis."""
    return 0.5 * (direct + np.flip(mirrored, axis=x_axis))


def merge_mirrored(direct: DepthResult, mirrored: DepthResult) -> DepthResult:
    """One DepthResult from a crop's and its mirror's (the mirror's maps flipped back, then averaged)."""
    live = None if direct.live_logit is None else 0.5 * (direct.live_logit + mirrored.live_logit)
    return DepthResult(mirror_mean(direct.relief_mm, mirrored.relief_mm, 1),
                       mirror_mean(direct.face_prob, mirrored.face_prob, 1), live)


class DepthEstimator:
    def __init__(self, model_path: Path | str, num_threads: int = 1, mirror_average: bool = False):
        self.model_path = Path(model_path)
        self.mirror_average = mirror_average  # the bundle's crop.mirror_average: what it was calibrated on
        self._interp = make_interpreter(self.model_path, num_threads)
        inputs = self._interp.get_input_details()
        if (
            len(inputs) != 1
            or tuple(inputs[0]["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3)
            or inputs[0]["dtype"] != np.int8
        ):
            got = [(tuple(d["shape"]), np.dtype(d["dtype"]).name) for d in inputs]
            raise DepthModelError(f"{model_path}: inputs {got}, expected one (1, 160, 160, 3) int8")
        self._input = inputs[0]["index"]
        self._in_scale, self._in_zero = _quant(inputs[0])
        if self._in_scale <= 0:
            raise DepthModelError(f"{model_path}: input is not quantised (scale {self._in_scale})")
        self._bit_flip = abs(self._in_scale - 1.0) < 1e-6 and self._in_zero == -128
        outs = self._outputs()
        self._bins, self._relief, self._live = outs["bins"], outs["relief"], outs.get("live")
        self._bins_q, self._relief_q = _quant(self._bins), _quant(self._relief)
        self._live_q = _quant(self._live) if self._live is not None else None
        log.info(
            "depth model %s: input scale %g zero %d, %d bins",
            self.model_path.name,
            self._in_scale,
            self._in_zero,
            int(self._bins["shape"][-1]) - 1,
        )

    @classmethod
    def of_bundle(cls, bundle, num_threads: int = 1) -> DepthEstimator:
        """The bundle's depth model, run as its evidence was calibrated (its crop.mirror_average)."""
        crop = getattr(bundle, "crop", None)
        return cls(bundle.depth_model, num_threads, mirror_average=bool(crop and crop.mirror_average))

    def _outputs(self) -> dict[str, dict]:
        details = self._interp.get_output_details()
        by_index = {d["index"]: d for d in details}
        named = {}
        try:
            runner_outputs = self._interp.get_signature_runner().get_output_details()
            named = {
                name: by_index[d["index"]] for name, d in runner_outputs.items() if d["index"] in by_index
            }
        except (ValueError, KeyError, AttributeError, RuntimeError):
            pass
        if not {"bins", "relief"} <= set(named):  # no signature: tell them apart by shape
            named = {output_name_by_shape(d["shape"]): d for d in details}
        grid = (1, GRID_SIZE, GRID_SIZE)
        for name in ("bins", "relief"):
            d = named.get(name)
            if d is None or tuple(d["shape"][:3]) != grid or d["dtype"] != np.int8 or _quant(d)[0] <= 0:
                got = [(tuple(x["shape"]), np.dtype(x["dtype"]).name) for x in details]
                raise DepthModelError(
                    f"{self.model_path}: no int8 output {name!r} on the 80×80 grid "
                    f"(outputs: {got}); convert the model with `make convert`"
                )
        live = named.get("live")
        if live is not None and (int(np.prod(live["shape"])) != 1 or live["dtype"] != np.int8):
            raise DepthModelError(f"{self.model_path}: output 'live' has shape {tuple(live['shape'])}, "
                                  "expected one int8 logit; convert the model with `make convert`")
        return named

    def quantize(self, crop_rgb: np.ndarray) -> np.ndarray:
        """(160, 160, 3) uint8 → (1, 160, 160, 3) int8 with the input's scale and zero point."""
        if crop_rgb.shape != (INPUT_SIZE, INPUT_SIZE, 3) or crop_rgb.dtype != np.uint8:
            raise ValueError(
                f"depth input must be (160, 160, 3) uint8, got {crop_rgb.shape} {crop_rgb.dtype}"
            )
        if self._bit_flip:
            return (crop_rgb ^ np.uint8(0x80)).view(np.int8)[None]
        q = np.round(crop_rgb.astype(np.float32) / self._in_scale) + self._in_zero
        return np.clip(q, -128, 127).astype(np.int8)[None]

    @property
    def has_live(self) -> bool:
        return self._live is not None

    @property
    def output_quant(self) -> dict[str, tuple[float, int]]:
        """(scale, zero point) of the "bins", "relief" (and "live") outputs."""
        q = {"bins": self._bins_q, "relief": self._relief_q}
        return q if self._live_q is None else {**q, "live": self._live_q}

    def invoke(self, crop_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The raw int8 outputs for one crop: bins (80, 80, K+1) and relief (80, 80)."""
        self._interp.set_tensor(self._input, self.quantize(crop_rgb))
        self._interp.invoke()
        return (self._interp.get_tensor(self._bins["index"])[0],
                self._interp.get_tensor(self._relief["index"])[0, :, :, 0])

    def live_logit(self) -> float | None:
        """The liveness logit of the last `invoke` (None for a v1 model without a "live" output)."""
        if self._live is None:
            return None
        scale, zero = self._live_q
        return float((int(self._interp.get_tensor(self._live["index"]).ravel()[0]) - zero) * scale)

    def predict(self, crop_rgb: np.ndarray) -> DepthResult:
        """The crop's depth; with mirror averaging, merged with its horizontal mirror's."""
        direct = self._predict_once(crop_rgb)
        if not self.mirror_average:
            return direct
        return merge_mirrored(direct, self._predict_once(np.ascontiguousarray(crop_rgb[:, ::-1])))

    def _predict_once(self, crop_rgb: np.ndarray) -> DepthResult:
        bins, relief = self.invoke(crop_rgb)
        (bs, bz), (rs, rz) = self._bins_q, self._relief_q
        background = (bins[:, :, -1].astype(np.float32) - bz) * np.float32(bs)
        face_prob = np.clip(1.0 - background, 0.0, 1.0)
        return DepthResult((relief.astype(np.float32) - rz) * np.float32(rs), face_prob, self.live_logit())


def output_name_by_shape(shape) -> str:
    """Output name of a model without a signature: one value = "live", one channel = "relief"."""
    if int(np.prod(shape)) == 1:
        return "live"
    return "relief" if int(shape[-1]) == 1 else "bins"


FACE_WIDTH_MM = 150.0  # assumed width of an adult face (the 68-landmark extent) for absolute distance


def focal_px(image_width: int, fov_deg: float) -> float:
    """Pinhole focal length in pixels from the horizontal field of view: fx = (W / 2) / tan(FOV / 2)."""
    return 0.5 * image_width / np.tan(np.radians(fov_deg) / 2.0)


def face_point_cloud(
    depth: DepthResult,
    transform,
    crop_rgb: np.ndarray,
    face_box,
    image_size: tuple[int, int],
    fov_deg: float = 60.0,
    face_prob: float = 0.5,
    face_width_mm: float = FACE_WIDTH_MM,
) -> tuple[np.ndarray, np.ndarray]:
    """The face's depth back-projected to camera coordinates: ((N, 3) float32 x, y, z mm, (N, 3) uint8 RGB).

    Intrinsics: a pinhole camera with square pixels, principal point at the image centre and
    fx = fy = (W / 2) / tan(fov_deg / 2). The network's relief is relative, so the absolute distance of
    the face is estimated from its box: Z0 = fx · face_width_mm / box width (px), assuming a 150 mm wide
    face; each face cell (face_prob above the threshold) lies at z = Z0 − relief (relief + = nearer) and
    x = (u − cx)·z / fx, y = (v − cy)·z / fy with (u, v) its centre in the frame (`grid_frame_coords`).
    Camera axes: x right, y down, z forward (OpenCV). Colours are the network input averaged to the grid.
    """
    import cv2

    from firmware_app.preprocess import grid_frame_coords

    width, height = image_size
    fx = focal_px(width, fov_deg)
    box_w = max(float(face_box[2]) - float(face_box[0]), 1.0)
    z0 = fx * face_width_mm / box_w
    mask = depth.face_prob > face_prob
    uv = grid_frame_coords(transform, GRID_SIZE)[mask]
    z = z0 - depth.relief_mm[mask].astype(np.float64)
    x = (uv[:, 0] - (width - 1) / 2.0) * z / fx
    y = (uv[:, 1] - (height - 1) / 2.0) * z / fx
    grid_rgb = cv2.resize(crop_rgb, (GRID_SIZE, GRID_SIZE), interpolation=cv2.INTER_AREA)
    return np.stack([x, y, z], axis=1).astype(np.float32), grid_rgb[mask].astype(np.uint8)


def write_ply(path, points: np.ndarray, colours: np.ndarray) -> None:
    """ASCII PLY: one vertex per line, `x y z r g b` (float mm, uchar)."""
    header = (
        "ply\nformat ascii 1.0\ncomment facedepth face point cloud, millimetres, camera axes x right y down"
        f" z forward\nelement vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    rows = [
        f"{x:.2f} {y:.2f} {z:.2f} {r} {g} {b}"
        for (x, y, z), (r, g, b) in zip(points.tolist(), colours.tolist(), strict=True)
    ]
    with open(path, "w") as f:
        f.write(header + "".join(r + "\n" for r in rows))
