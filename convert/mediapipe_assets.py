"""MediaPipe's Apache-2.0 face models, taken out of the pinned mediapipe wheel (mediapipe is never imported).

    python -m convert.mediapipe_assets [--dest out/models/mediapipe] [--cache out/cache/wheels]

`pip download --no-deps` fetches the one pinned wheel (cp311, manylinux x86_64; the .tflite files inside
are platform independent) into the cache, its sha256 is checked against the pin, and these files are
extracted into the destination:

    face_detection_short_range.tflite        BlazeFace short range, 128×128 float input (firmware_app.face)
    face_detection_full_range_sparse.tflite  BlazeFace full range, 192×192 float input (faces up to ~5 m)
    face_landmark.tflite                     face mesh, 192×192 → 468 3D points
    LICENSE                              the wheel's Apache-2.0 licence text (from its dist-info)
    SOURCE.json                          wheel name + sha256, each file's path inside the wheel + sha256

Idempotent: when SOURCE.json and the files match, nothing is downloaded or written; a wheel already in
the cache is reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from firmware_app.integrity import sha256_file

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEST = REPO / "out" / "models" / "mediapipe"
DEFAULT_CACHE = REPO / "out" / "cache" / "wheels"

REQUIREMENT = "mediapipe==0.10.14"
WHEEL_NAME = "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4"
PIP_TARGET = ["--python-version", "3.11", "--platform", "manylinux_2_17_x86_64"]
# destination name → path inside the wheel
MODEL_MEMBERS = {
    "face_detection_short_range.tflite": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "face_landmark.tflite": "mediapipe/modules/face_landmark/face_landmark.tflite",
    "face_detection_full_range_sparse.tflite": (
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite"
    ),
}
LICENSE_NAME = "LICENSE"
SOURCE_NAME = "SOURCE.json"


class MediapipeAssetsError(RuntimeError):
    """The models could not be obtained; the message says what to do."""


@dataclass(frozen=True)
class MediapipeModels:
    face_detector: Path  # face_detection_short_range.tflite
    face_landmark: Path  # face_landmark.tflite
    license: Path
    source: Path  # SOURCE.json
    face_detector_full_range: Path  # face_detection_full_range_sparse.tflite (same wheel, same licence)

    @classmethod
    def in_dir(cls, dest: Path) -> MediapipeModels:
        return cls(
            dest / "face_detection_short_range.tflite",
            dest / "face_landmark.tflite",
            dest / LICENSE_NAME,
            dest / SOURCE_NAME,
            dest / "face_detection_full_range_sparse.tflite",
        )


def _is_complete(dest: Path) -> bool:
    """True when SOURCE.json exists, names the pinned wheel, and every listed file has its hash."""
    try:
        source = json.loads((dest / SOURCE_NAME).read_text())
        files = source["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if source.get("wheel_sha256") != WHEEL_SHA256 or set(files) != {*MODEL_MEMBERS, LICENSE_NAME}:
        return False
    return all(
        (dest / name).is_file() and sha256_file(dest / name) == f["sha256"] for name, f in files.items()
    )


def _pip_download(cache: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        *PIP_TARGET,
        "--retries",
        "2",
        "--timeout",
        "30",
        "--disable-pip-version-check",
        REQUIREMENT,
        "-d",
        str(cache),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as e:
        raise MediapipeAssetsError(
            f"pip download {REQUIREMENT} took more than 15 min; {_what_to_do(cache)}"
        ) from e
    if proc.returncode != 0:
        tail = "\n    ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise MediapipeAssetsError(
            f"pip could not download {REQUIREMENT} (exit {proc.returncode}):\n    {tail}\n"
            + _what_to_do(cache)
        )


def _what_to_do(cache: Path) -> str:
    return (
        f"Check that this machine reaches the package index (PyPI, or the one set by PIP_INDEX_URL / a proxy "
        f"in pip.conf), or on a machine that does run\n"
        f"    pip download --no-deps --only-binary=:all: {' '.join(PIP_TARGET)} {REQUIREMENT} -d wheels\n"
        f"and copy {WHEEL_NAME} into {cache}, then run this again."
    )


def obtain_wheel(cache: Path = DEFAULT_CACHE) -> Path:
    """The pinned wheel in `cache`, downloaded with pip unless already there; its sha256 is checked."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL_NAME
    if not wheel.is_file():
        _pip_download(cache)
        if not wheel.is_file():
            found = sorted(p.name for p in cache.glob("mediapipe-0.10.14-*.whl"))
            raise MediapipeAssetsError(
                f"pip downloaded {found or 'nothing'} into {cache}, expected {WHEEL_NAME}"
            )
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        raise MediapipeAssetsError(
            f"{wheel} has sha256 {digest}, the pinned wheel has {WHEEL_SHA256}: the file is damaged or "
            f"not the release this project was checked against. Delete it and run this again."
        )
    return wheel


def _license_member(zf: zipfile.ZipFile) -> str:
    """The Apache-2.0 licence text in the wheel's dist-info (LICENSE, or licenses/LICENSE in newer wheels)."""
    for name in zf.namelist():
        top, _, rest = name.partition("/")
        if top.endswith(".dist-info") and Path(rest).name.upper().startswith(
            ("LICENSE", "LICENCE", "COPYING")
        ):
            if b"Apache License" in zf.read(name)[:2000]:
                return name
    raise MediapipeAssetsError(f"{zf.filename}: no Apache-2.0 licence text in the wheel's dist-info")


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def extract(wheel: Path, dest: Path) -> dict:
    """Write the models, the licence and SOURCE.json (last, so its presence means the rest is complete)."""
    dest.mkdir(parents=True, exist_ok=True)
    files = {}
    with zipfile.ZipFile(wheel) as zf:
        members = {**MODEL_MEMBERS, LICENSE_NAME: _license_member(zf)}
        for name, member in members.items():
            try:
                data = zf.read(member)
            except KeyError as e:
                raise MediapipeAssetsError(f"{wheel.name} has no {member}") from e
            _write_atomic(dest / name, data)
            files[name] = {
                "path_in_wheel": member,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
    source = {
        "requirement": REQUIREMENT,
        "wheel": wheel.name,
        "wheel_sha256": WHEEL_SHA256,
        "license": "Apache-2.0",
        "files": files,
    }
    _write_atomic(dest / SOURCE_NAME, (json.dumps(source, indent=2) + "\n").encode())
    return source


def ensure_mediapipe_models(
    dest: Path | str = DEFAULT_DEST, cache: Path | str = DEFAULT_CACHE
) -> MediapipeModels:
    """Paths of the MediaPipe models in `dest`, extracting them (and downloading the wheel) only if needed."""
    dest = Path(dest)
    if not _is_complete(dest):
        extract(obtain_wheel(Path(cache)), dest)
    return MediapipeModels.in_dir(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m convert.mediapipe_assets", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--dest", type=Path, default=DEFAULT_DEST, help="output directory (default: %(default)s)"
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="wheel cache (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        models = ensure_mediapipe_models(args.dest, args.cache)
    except MediapipeAssetsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    source = json.loads(models.source.read_text())
    print(f"{args.dest}: from {source['wheel']} (sha256 {source['wheel_sha256'][:12]}…)")
    for name, f in source["files"].items():
        print(f"  {name:36s} {f['bytes']:>9,d} B  sha256 {f['sha256'][:12]}…  ← {f['path_in_wheel']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
