"""The release bundle: quantise, verify (the gate), calibrate liveness, then write the directory.

    build_bundle(run_dir, out_dir) -> BundleResult       (CLI: python -m convert RUN_DIR --out DIR)

    out_dir/
      depth.tflite                        int8 depth network (convert/quantize.py)
      face_detection_short_range.tflite   BlazeFace from the pinned mediapipe wheel (mediapipe_assets.py)
      face_detection_full_range_sparse.tflite  BlazeFace full range, same wheel and licence (far faces)
      LICENSE.mediapipe                   its Apache-2.0 licence text
      device.example.yaml                 example device config (replay camera), paths relative to the bundle
      manifest.json                       written last, atomically: schema, files + sha256, model I/O and
                                          quantisation, crop, bins, liveness, float/int8 metrics, training
                                          config, dataset, source commit (schema: firmware_app/bundle.py)
      manifest.json.sig                   its Ed25519 signature (convert/sign.py): the key in
                                          $FACEDEPTH_SIGNING_KEY, else the committed DEVELOPMENT key

Nothing is written to out_dir until the int8 model has passed the gate. An existing manifest.json (and its
signature) is removed first, so a bundle being rewritten never looks valid; the device validates it with
`firmware_app.bundle.load_bundle`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from convert.mediapipe_assets import DEFAULT_DEST, ensure_mediapipe_models
from convert.quantize import DEFAULT_CALIB, QuantResult, check_n_calib, dataset_of, load_checked_run, quantize
from convert.sign import load_private_key, public_text, sign_bundle
from convert.verify import VerifyResult, verify
from firmware_app.bundle import MANIFEST, SCHEMA, load_bundle
from firmware_app.integrity import sha256_file
from firmware_app.signing import sig_path
from train.provenance import source_commit

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
DEPTH_FILE = "depth.tflite"
DETECTOR_FILE = "face_detection_short_range.tflite"
FULL_RANGE_FILE = "face_detection_full_range_sparse.tflite"  # firmware_app/face_search.py
LICENSE_FILE = "LICENSE.mediapipe"
DEVICE_EXAMPLE = "device.example.yaml"


@dataclass(frozen=True)
class BundleResult:
    path: Path
    manifest: dict
    quant: QuantResult
    verify: VerifyResult


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the daemon's user must read the bundle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def device_example(threshold_mm: float, public_key: str = "") -> str:
    return f"""\
# Example device config for this bundle (placeholder until firmware_app/config.py settles its keys).
# Relative paths are relative to the bundle directory. Run on a laptop with a recorded clip:
#   python -m firmware_app run --config device.example.yaml
camera:
  type: replay
  source: clips/door.mp4    # a video file or a folder of images
  loop: true
depth:
  bundle: .                 # this directory (manifest.json + depth.tflite + detector)
  num_threads: 2
  trusted_keys:             # the key that signed manifest.json (manifest.json.sig)
    - {public_key}
detector:
  num_threads: 1
liveness:
  threshold_mm: 0.0         # 0 = the bundle's calibrated threshold ({threshold_mm:.2f} mm at 1% BPCER)
outbox:
  dir: outbox
hooks: []
"""


def _json_safe(obj):
    """NaN/inf (a metric with nothing to measure) → null, so the manifest is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _file_entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def make_manifest(out: Path, info: dict, cfg, q: QuantResult, v: VerifyResult, index, source: dict,
                  files: list[str], mirror_average: bool = False) -> dict:
    from train.model import bin_centres

    table = {name: _file_entry(out / name) for name in files}
    sha = table[DEPTH_FILE]["sha256"]
    return {
        "schema": SCHEMA,
        "version": f"{info['name']}-{sha[:8]}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": table,
        "depth_model": {"file": DEPTH_FILE, "inputs": [q.input.to_manifest()],
                        "outputs": [o.to_manifest() for o in q.outputs], "input_is": "int8 = RGB pixel - 128",
                        "macs": int(info["model"]["macs"]), "params": int(info["model"]["params"]),
                        "ops": q.op_counts(), "calibration": {"split": "val", "crops": q.n_calib,
                                                              "distinct_samples": q.distinct_calib_samples}},
        "detector": {"file": DETECTOR_FILE, "full_range_file": FULL_RANGE_FILE, "license_file": LICENSE_FILE,
                     "source": source},
        "crop": {"input_size": info["crop"]["input_size"], "grid_size": info["crop"]["grid_size"],
                 "crop_scale": info["crop"]["scale"], "border": cfg.data.border,  # the crop calibrated on
                 "use_eyes": info["crop"]["use_eyes"], "mirror_average": mirror_average},
        "depth_bins_mm": [round(float(c), 4) for c in bin_centres(cfg.model)],
        "relief_range_mm": list(cfg.model.relief_range_mm),
        "liveness": v.liveness.to_manifest(),
        "metrics": {"split": v.split, "float": v.float_metrics, "int8": v.int8_metrics,
                    "int8_val": v.int8_val_metrics, "gate": {"passed": v.passed, "notes": list(v.notes)},
                    "int8_latency_ms_1thread_build_machine": round(v.int8_latency_ms, 3)},
        "training_config": info["config"],
        "dataset": {"path": str(Path(index.root).resolve()),
                    "index_sha256": sha256_file(Path(index.root) / "index.json"),
                    "content_sha256": index.content_sha256(),  # the shards, whatever commit wrote the index
                    "trained_index_sha256": info["dataset"].get("index_sha256")},
        # weights_sha256: the committed models/default/model.weights.h5 this bundle was converted from
        "weights_sha256": info.get("weights_sha256"),
        "run": {"name": info["name"], "status": info.get("status"), "best": info.get("best"),
                "versions": info.get("versions")},
        "source_commit": source_commit(),
    }


def build_bundle(run_dir, out_dir, *, n_calib: int = DEFAULT_CALIB, dataset=None, max_eval_samples: int = 0,
                 num_threads: int = 2, mediapipe_dest=DEFAULT_DEST, signing_key=None,
                 mirror_average: bool = False) -> BundleResult:
    """Quantise the run's model, verify it (GateError if refused), write, sign and re-validate the bundle.

    mirror_average: the device runs each crop and its mirror and averages (firmware_app/depth.py); the
    evidence is calibrated that way and the manifest's crop.mirror_average tells the device. Off by
    default: measured, it lowers real-photo content's evidence, bona fide as much as attacks (README).

    signing_key: the private key file (default $FACEDEPTH_SIGNING_KEY, else keys/dev/signing.key).
    """
    check_n_calib(n_calib)
    load_private_key(signing_key)  # a missing key fails now, not after minutes of conversion
    run = load_checked_run(run_dir)
    cfg, _, info = run
    index = dataset_of(info, dataset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staged = out / f".{DEPTH_FILE}.staged"
    try:
        q = quantize(run_dir, staged, n_calib, dataset=index, run=run)
        v = verify(run_dir, staged, dataset=index, max_samples=max_eval_samples, num_threads=num_threads,
                   run=run, mirror_average=mirror_average)
        v.check()
        models = ensure_mediapipe_models(mediapipe_dest)
        (out / MANIFEST).unlink(missing_ok=True)  # from here on the directory is not a valid bundle
        sig_path(out / MANIFEST).unlink(missing_ok=True)
        os.chmod(staged, 0o644)
        staged.replace(out / DEPTH_FILE)
        q = dataclasses.replace(q, path=out / DEPTH_FILE)
    finally:
        staged.unlink(missing_ok=True)
    for src, name in ((models.face_detector, DETECTOR_FILE), (models.license, LICENSE_FILE),
                      (models.face_detector_full_range, FULL_RANGE_FILE)):
        _write_atomic(out / name, Path(src).read_bytes())
    public_key = public_text(load_private_key(signing_key))
    _write_atomic(out / DEVICE_EXAMPLE, device_example(v.liveness.threshold_mm, public_key).encode())
    source = json.loads(Path(models.source).read_text())
    files = [DEPTH_FILE, DETECTOR_FILE, FULL_RANGE_FILE, LICENSE_FILE, DEVICE_EXAMPLE]
    manifest = _json_safe(make_manifest(out, info, cfg, q, v, index, source, files, mirror_average))
    _write_atomic(out / MANIFEST, (json.dumps(manifest, indent=1, allow_nan=False) + "\n").encode())
    sign_bundle(out, signing_key)
    load_bundle(out, [public_key])  # what the device will do
    log.info("bundle %s written to %s", manifest["version"], out)
    return BundleResult(out, manifest, q, v)

