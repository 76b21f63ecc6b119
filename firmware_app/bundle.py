"""The release bundle on the device: `load_bundle(path) -> Bundle`, refusing anything it cannot trust.

A bundle is a directory written by `python -m convert RUN_DIR --out DIR` (`make convert`):

    manifest.json                       written last; lists every other file with its sha256 and size
    depth.tflite                        the int8 depth network (input int8 = pixel - 128)
    face_detection_short_range.tflite   MediaPipe BlazeFace (Apache-2.0), + LICENSE.mediapipe
    device.example.yaml                 an example device config, paths relative to the bundle

Checks, in order, each failure a `BundleError` naming the file and the fix: the directory exists,
manifest.json exists and is a JSON object, its schema is one this code knows, every listed file is a
plain name inside the bundle, exists, has the listed size and sha256 (read in 1 MiB chunks), the depth
model's input is (1, 160, 160, 3) int8 and its outputs "bins" (1, 80, 80, K+1) and "relief" (1, 80, 80, 1)
are present with int8 quantisation, and the crop, bins and liveness entries are usable.

Device code: imports only the standard library, numpy and firmware_app.integrity.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_app.integrity import sha256_file

SCHEMA = "facedepth-bundle/1"
KNOWN_SCHEMAS = (SCHEMA,)
MANIFEST = "manifest.json"
INPUT_SHAPE = (1, 160, 160, 3)
GRID = 80
FIX_COPY = "re-copy the release or run `make convert`"


class BundleError(ValueError):
    """A bundle that must not be used; the message names the file and what to do."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the manifest describes it (real = scale * (q - zero_point))."""

    name: str
    index: int  # the TFLite tensor index (outputs are matched by name, this is a hint)
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)


@dataclass(frozen=True)
class CropParams:
    input_size: int
    grid_size: int
    crop_scale: float
    border: str
    use_eyes: bool


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict
    version: str
    depth_model: Path
    model_sha256: str
    detector: Path
    input: TensorSpec
    outputs: dict[str, TensorSpec]  # "bins", "relief"
    crop: CropParams
    bins_mm: tuple[float, ...]  # relief bin centres (the background class is the last channel)
    relief_range_mm: tuple[float, float]
    liveness_threshold_mm: float  # live iff the plane-removed relief range >= this
    liveness: dict


def _fail(path: Path, problem: str, fix: str = FIX_COPY) -> BundleError:
    return BundleError(f"{path}: {problem}; {fix}")


def _read_manifest(root: Path) -> dict:
    if not root.is_dir():
        raise _fail(root, "no such bundle directory", "check the path (device config `bundle:`) or run "
                    "`make convert` / `make deploy`")
    path = root / MANIFEST
    if not path.is_file():
        raise _fail(path, "missing (not a release bundle, or a copy that stopped before its last file)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"not valid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise _fail(path, "not a JSON object")
    schema = manifest.get("schema")
    if schema not in KNOWN_SCHEMAS:
        raise _fail(path, f"unknown schema {schema!r} (this firmware reads {', '.join(KNOWN_SCHEMAS)})",
                    "update the firmware to the release's version or convert the model with this one")
    return manifest


def _check_files(root: Path, manifest: dict) -> dict[str, dict]:
    path = root / MANIFEST
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise _fail(path, "has no 'files' table")
    for name, entry in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in (".", "..", MANIFEST):
            raise _fail(path, f"lists {name!r}, which is not a plain file name inside the bundle")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise _fail(path, f"entry {name!r} has no sha256")
        f = root / name
        if not f.is_file():
            raise _fail(f, "missing (listed in manifest.json)")
        size = f.stat().st_size
        if isinstance(entry.get("bytes"), int) and size != entry["bytes"]:
            raise _fail(f, f"{size} bytes, manifest.json says {entry['bytes']} "
                        "(partly copied or tampered with)")
        if sha256_file(f) != entry["sha256"]:
            raise _fail(f, "sha256 mismatch (bundle tampered with or partly copied)")
    return files


def _spec(d, where: Path, what: str) -> TensorSpec:
    try:
        spec = TensorSpec(str(d["name"]), int(d.get("index", -1)), tuple(int(v) for v in d["shape"]),
                          str(d["dtype"]), float(d["scale"]), int(d["zero_point"]))
    except (KeyError, TypeError, ValueError) as e:
        raise _fail(where, f"{what} is incomplete ({e!r}; needs name, shape, dtype, scale, "
                    "zero_point)") from e
    if not (math.isfinite(spec.scale) and spec.scale > 0):
        raise _fail(where, f"{what} has quantisation scale {spec.scale} (must be > 0)")
    return spec


def _model_specs(root: Path, manifest: dict, files: dict) -> tuple[Path, TensorSpec, dict[str, TensorSpec]]:
    where = root / MANIFEST
    dm = manifest.get("depth_model")
    if not isinstance(dm, dict) or dm.get("file") not in files:
        raise _fail(where, "'depth_model.file' is missing or not listed in 'files'")
    model = root / dm["file"]
    inputs = [_spec(d, where, "depth_model input") for d in dm.get("inputs") or []]
    if len(inputs) != 1 or inputs[0].shape != INPUT_SHAPE or inputs[0].dtype != "int8":
        got = [(s.shape, s.dtype) for s in inputs]
        raise _fail(model, f"input is {got}, this firmware feeds one {INPUT_SHAPE} int8 tensor",
                    "convert the model with `make convert` (full-integer int8)")
    outputs = {s.name: s for s in (_spec(d, where, "depth_model output") for d in dm.get("outputs") or [])}
    n_classes = len(manifest.get("depth_bins_mm") or []) + 1
    expected = {"bins": (1, GRID, GRID, n_classes), "relief": (1, GRID, GRID, 1)}
    for name, shape in expected.items():
        spec = outputs.get(name)
        if spec is None or spec.shape != shape or spec.dtype != "int8":
            got = spec and (spec.shape, spec.dtype)
            raise _fail(model, f"output {name!r} is {got}, expected {shape} int8 "
                        f"({n_classes - 1} depth bins + background)", "convert the model with `make convert`")
    return model, inputs[0], outputs


def _crop(manifest: dict, where: Path) -> CropParams:
    c = manifest.get("crop")
    try:
        crop = CropParams(int(c["input_size"]), int(c["grid_size"]), float(c["crop_scale"]), str(c["border"]),
                          bool(c["use_eyes"]))
    except (KeyError, TypeError, ValueError) as e:
        raise _fail(where, f"'crop' is incomplete ({e!r})") from e
    if (crop.input_size, crop.grid_size) != (INPUT_SHAPE[1], GRID) or crop.crop_scale <= 0:
        raise _fail(where, f"'crop' {crop} does not match this firmware's {INPUT_SHAPE[1]}/{GRID} crop")
    return crop


def _liveness(manifest: dict, where: Path) -> tuple[dict, float]:
    live = manifest.get("liveness")
    threshold = live.get("threshold_mm") if isinstance(live, dict) else None
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise _fail(where, "'liveness.threshold_mm' is missing or not a number")
    return live, float(threshold)


def load_bundle(path) -> Bundle:
    """Validate the bundle directory `path` (schema, hashes, shapes) and describe it."""
    root = Path(path)
    manifest = _read_manifest(root)
    where = root / MANIFEST
    files = _check_files(root, manifest)
    model, inp, outputs = _model_specs(root, manifest, files)
    det = manifest.get("detector")
    if not isinstance(det, dict) or det.get("file") not in files:
        raise _fail(where, "'detector.file' is missing or not listed in 'files'")
    bins = manifest.get("depth_bins_mm")
    rng = manifest.get("relief_range_mm")
    if not isinstance(rng, list) or len(rng) != 2:
        raise _fail(where, "'relief_range_mm' must be [min, max]")
    live, threshold = _liveness(manifest, where)
    return Bundle(root=root, manifest=manifest, version=str(manifest.get("version", "")), depth_model=model,
                  model_sha256=files[model.name]["sha256"], detector=root / det["file"], input=inp,
                  outputs=outputs, crop=_crop(manifest, where), bins_mm=tuple(float(b) for b in bins),
                  relief_range_mm=(float(rng[0]), float(rng[1])), liveness_threshold_mm=threshold,
                  liveness=live)


def main(argv: list[str] | None = None) -> int:
    """python -m firmware_app.bundle DIR: validate a bundle as the device does (make bundle-verify)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m firmware_app.bundle", description=main.__doc__)
    p.add_argument("bundle", help="bundle directory (manifest.json + files)")
    a = p.parse_args(argv)
    try:
        b = load_bundle(a.bundle)
    except BundleError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    m = b.manifest
    print(f"{b.root}: bundle {b.version} OK ({len(m['files'])} files, sha256 verified; schema {m['schema']})")
    print(f"  depth model {b.depth_model.name} sha256 {b.model_sha256[:12]}…, input {b.input.shape} int8 "
          f"(scale {b.input.scale:g}, zero point {b.input.zero_point}), outputs "
          + ", ".join(f"{k} {v.shape}" for k, v in b.outputs.items()))
    metrics = m.get("metrics", {})
    mae = [(metrics.get(k) or {}).get("bona_fide", {}) or {} for k in ("float", "int8")]
    if all("mae_mm" in g for g in mae):
        print(f"  bona fide MAE float {mae[0]['mae_mm']:.2f} mm, int8 {mae[1]['mae_mm']:.2f} mm")
    print(f"  liveness threshold {b.liveness_threshold_mm:.2f} mm ({b.liveness.get('score')}); "
          f"source {m.get('source_commit', '?')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
