"""The release bundle on the device: `load_bundle(path) -> Bundle`, refusing anything it cannot trust.

A bundle is a directory written by `python -m convert RUN_DIR --out DIR` (`make convert`):

    manifest.json                       written last; lists every other file with its sha256 and size
    manifest.json.sig                   its Ed25519 signature by the operator's key (convert/sign.py)
    depth.tflite                        the int8 depth network (input int8 = pixel - 128)
    face_detection_short_range.tflite   MediaPipe BlazeFace (Apache-2.0), + LICENSE.mediapipe
    device.example.yaml                 an example device config, paths relative to the bundle

Checks, in order, each failure a `BundleError` naming the file and the fix: the directory exists,
manifest.json exists, is signed (manifest.json.sig) by one of the device's trusted keys (its config's
`depth.trusted_keys`; firmware_app/signing.py) and is a JSON object, its schema is one this code
knows, every listed file is a plain name inside the bundle, exists, has the listed size and sha256
(read in 1 MiB chunks), the depth model's input is (1, 160, 160, 3) int8 and its outputs "bins"
(1, 80, 80, K+1) and "relief" (1, 80, 80, 1) are present with int8 quantisation, and the crop, bins
and liveness entries are usable (types, finite values, ranges). The manifest holds every file's sha256
and the threshold and calibration, so the signature covers all of them.

`trusted_keys=None` skips only the signature: for workstation tools checking a bundle they just built.
Every device entry point (run, predict, --validate-config, `python -m firmware_app.bundle`) passes keys.

Device code: imports only the standard library, numpy and firmware_app.integrity / .signing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_app.integrity import sha256_file
from firmware_app.medium import MediumError, MediumModel
from firmware_app.preprocess import BORDERS
from firmware_app.signing import SignatureError, verify_bytes

SCHEMA = "facedepth-bundle/1"
KNOWN_SCHEMAS = (SCHEMA,)
MANIFEST = "manifest.json"
INPUT_SHAPE = (1, 160, 160, 3)
GRID = 80
FIX_COPY = "re-copy the release or run `make convert`"
FIX_SIGN = "sign it with the operator's key (`make sign-bundle BUNDLE=...`, or `make convert` signs)"
MAX_MANIFEST_BYTES = 4 << 20
MAX_BINS = 1024


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
    mirror_average: bool = False  # run the crop and its mirror, average (firmware_app/depth.py); absent: off


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


def _read_manifest(root: Path, trusted_keys: Sequence[str] | None) -> dict:
    if not root.is_dir():
        raise _fail(root, "no such bundle directory", "check the path (device config `bundle:`) or run "
                    "`make convert` / `make deploy`")
    path = root / MANIFEST
    if not path.is_file():
        raise _fail(path, "missing (not a release bundle, or a copy that stopped before its last file)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise _fail(path, f"{path.stat().st_size} bytes, far more than a manifest")
    data = path.read_bytes()  # read once: the bytes verified are the bytes parsed
    if trusted_keys is not None:
        try:
            verify_bytes(data, path, trusted_keys, FIX_SIGN)
        except SignatureError as e:
            raise BundleError(str(e)) from None
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _fail(path, f"not valid JSON ({str(e)[:200]})") from None
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
        if not isinstance(entry.get("bytes"), int) or isinstance(entry["bytes"], bool):
            raise _fail(path, f"entry {name!r} has no integer 'bytes'")
        if size != entry["bytes"]:
            raise _fail(f, f"{size} bytes, manifest.json says {entry['bytes']} "
                        "(partly copied or tampered with)")
        if sha256_file(f) != entry["sha256"]:
            raise _fail(f, "sha256 mismatch (bundle tampered with or partly copied)")
    return files


def _spec(d, where: Path, what: str) -> TensorSpec:
    try:
        spec = TensorSpec(str(d["name"]), int(d.get("index", -1)), tuple(int(v) for v in d["shape"]),
                          str(d["dtype"]), float(d["scale"]), int(d["zero_point"]))
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as e:
        raise _fail(where, f"{what} is incomplete ({str(e)[:100]!r}; needs name, shape, dtype, scale, "
                    "zero_point)") from None
    if not (math.isfinite(spec.scale) and spec.scale > 0):
        raise _fail(where, f"{what} has quantisation scale {spec.scale} (must be > 0)")
    return spec


def _model_specs(root: Path, manifest: dict, files: dict) -> tuple[Path, TensorSpec, dict[str, TensorSpec]]:
    where = root / MANIFEST
    dm = manifest.get("depth_model")
    if not isinstance(dm, dict) or not isinstance(dm.get("file"), str) or dm["file"] not in files:
        raise _fail(where, "'depth_model.file' is missing or not listed in 'files'")
    model = root / dm["file"]
    inputs = [_spec(d, where, "depth_model input")
              for d in _list(dm.get("inputs"), where, "depth_model.inputs")]
    if len(inputs) != 1 or inputs[0].shape != INPUT_SHAPE or inputs[0].dtype != "int8":
        got = [(s.shape, s.dtype) for s in inputs]
        raise _fail(model, f"input is {got}, this firmware feeds one {INPUT_SHAPE} int8 tensor",
                    "convert the model with `make convert` (full-integer int8)")
    outputs = {s.name: s for s in (_spec(d, where, "depth_model output")
                                   for d in _list(dm.get("outputs"), where, "depth_model.outputs"))}
    n_classes = len(_bins(manifest, where)) + 1
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
                          bool(c["use_eyes"]), c.get("mirror_average", False))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise _fail(where, f"'crop' is incomplete ({str(e)[:100]!r})") from None
    if not isinstance(crop.mirror_average, bool):  # the evidence was calibrated one way: no guessing
        raise _fail(where, f"'crop.mirror_average' is {crop.mirror_average!r}: must be true or false")
    if crop.border not in BORDERS:
        raise _fail(where, f"'crop' border {crop.border!r} is unknown to this firmware (known: "
                           f"{', '.join(BORDERS)}); update the firmware or rebuild the bundle")
    if (crop.input_size, crop.grid_size) != (INPUT_SHAPE[1], GRID) or not 0 < crop.crop_scale < 100:
        raise _fail(where, f"'crop' {crop} does not match this firmware's {INPUT_SHAPE[1]}/{GRID} crop")
    return crop


def _list(value, where: Path, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(where, f"'{what}' must be a list, not {type(value).__name__}")
    return value


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bins(manifest: dict, where: Path) -> tuple[float, ...]:
    bins = manifest.get("depth_bins_mm")
    if not isinstance(bins, list) or not 1 <= len(bins) <= MAX_BINS or not all(_number(b) for b in bins):
        raise _fail(where, f"'depth_bins_mm' must be a list of 1 to {MAX_BINS} finite numbers")
    return tuple(float(b) for b in bins)


def _relief_range(manifest: dict, where: Path) -> tuple[float, float]:
    rng = manifest.get("relief_range_mm")
    if not isinstance(rng, list) or len(rng) != 2 or not all(_number(v) for v in rng) or rng[0] >= rng[1]:
        raise _fail(where, "'relief_range_mm' must be [min, max], two finite numbers with min < max")
    return float(rng[0]), float(rng[1])


def _liveness(manifest: dict, where: Path) -> tuple[dict, float]:
    live = manifest.get("liveness")
    threshold = live.get("threshold_mm") if isinstance(live, dict) else None
    if not _number(threshold):
        raise _fail(where, "'liveness.threshold_mm' is missing or not a number")
    if not 0 <= threshold < 1000:
        raise _fail(where, f"'liveness.threshold_mm' is {threshold!r}: must be from 0 to 1000 mm (a relief "
                    "range)")
    try:
        MediumModel.from_manifest(live)
    except MediumError as e:
        raise _fail(where, str(e)) from None
    return live, float(threshold)


def load_bundle(path, trusted_keys: Sequence[str] | None = None) -> Bundle:
    """Validate the bundle directory `path` (signature, schema, hashes, shapes) and describe it."""
    root = Path(path)
    manifest = _read_manifest(root, trusted_keys)
    where = root / MANIFEST
    files = _check_files(root, manifest)
    model, inp, outputs = _model_specs(root, manifest, files)
    det = manifest.get("detector")
    if not isinstance(det, dict) or not isinstance(det.get("file"), str) or det["file"] not in files:
        raise _fail(where, "'detector.file' is missing or not listed in 'files'")
    live, threshold = _liveness(manifest, where)
    return Bundle(root=root, manifest=manifest, version=str(manifest.get("version", ""))[:100],
                  depth_model=model, model_sha256=files[model.name]["sha256"], detector=root / det["file"],
                  input=inp, outputs=outputs, crop=_crop(manifest, where), bins_mm=_bins(manifest, where),
                  relief_range_mm=_relief_range(manifest, where), liveness_threshold_mm=threshold,
                  liveness=live)


def _mae_line(metrics) -> str | None:
    groups = [(metrics.get(k) or {}) if isinstance(metrics, dict) else {} for k in ("float", "int8")]
    mae = [(g.get("bona_fide") or {}).get("mae_mm") if isinstance(g, dict) else None for g in groups]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in mae):
        return f"  bona fide MAE float {mae[0]:.2f} mm, int8 {mae[1]:.2f} mm"
    return None


def main(argv: list[str] | None = None) -> int:
    """python -m firmware_app.bundle DIR: validate a bundle as the device does (make bundle-verify)."""
    import argparse
    import sys

    from firmware_app.signing import read_keys

    p = argparse.ArgumentParser(prog="python -m firmware_app.bundle", description=main.__doc__)
    p.add_argument("bundle", help="bundle directory (manifest.json + files)")
    p.add_argument("--trusted-key", action="append", default=[], metavar="KEY",
                   help="a trusted public key (ed25519:...) or a .pub file with one per line; repeatable")
    p.add_argument("--config", help="device config whose depth.trusted_keys to trust")
    a = p.parse_args(argv)
    try:
        keys = read_keys(a.trusted_key)
        if a.config:
            from firmware_app.config import ConfigError, load_config

            try:
                keys += list(load_config(a.config).depth.trusted_keys)
            except ConfigError as e:
                raise BundleError(f"config: {e}") from None
        if not keys:
            raise BundleError(f"{a.bundle}: no trusted key given, so its signature cannot be checked; pass "
                              "--trusted-key FILE.pub|ed25519:... (development: keys/dev/signing.pub) or "
                              "--config with depth.trusted_keys")
        b = load_bundle(a.bundle, keys)
    except (BundleError, ValueError) as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    m = b.manifest
    print(f"{b.root}: bundle {b.version} OK ({len(m['files'])} files, sha256 and signature verified; "
          f"schema {m['schema']})")
    print(f"  depth model {b.depth_model.name} sha256 {b.model_sha256[:12]}…, input {b.input.shape} int8 "
          f"(scale {b.input.scale:g}, zero point {b.input.zero_point}), outputs "
          + ", ".join(f"{k} {v.shape}" for k, v in b.outputs.items()))
    mae = _mae_line(m.get("metrics"))
    if mae:
        print(mae)
    print(f"  liveness threshold {b.liveness_threshold_mm:.2f} mm ({str(b.liveness.get('score'))[:60]}); "
          f"source {str(m.get('source_commit', '?'))[:40]}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
