"""Dataset shards: the on-disk form of a list of `Sample`s.

A shard is one `.npz` file (a zip of arrays, readable with `np.load(..., allow_pickle=False)`):

    rgb_jpeg      uint8 (total,)    the frames' JPEG bytes, concatenated (the camera's own JPEG pass
                                    when it has one, else quality 95: each frame compressed once)
    rgb_offsets   int64 (N+1,)      frame i is rgb_jpeg[rgb_offsets[i]:rgb_offsets[i+1]]
    dm_blob       uint8 (total,)    zlib(depth crop + mask uint8 crop bytes), concatenated
    dm_offsets    int64 (N+1,)
    dm_box        int32 (N, 4)      y0, y1, x0, x1 of the crop; depth is 0 and mask 0 outside it,
                                    so the crop stores the exact float32 depth losslessly
    dm_codec      int32 ()          how the depth crop is laid out: 1 = float32 bytes (shards
                                    without this field); 2 = each row's float32 bit patterns as
                                    uint32 differences from the left neighbour (mod 2^32, exact),
                                    split into 4 byte planes: a smooth surface gives near-constant
                                    high planes, which compress 2.5x smaller and 3x faster
    image_hw      int32 (2,)        frame height, width (the same for all samples of a dataset)
    landmarks_2d  float32 (N, 68, 2), landmarks_3d float32 (N, 68, 3), landmarks_visible bool (N, 68)
    intrinsics    float32 (N, 3, 3), pose_deg float32 (N, 3), face_box float32 (N, 4)
    identity      int64 (N,),  label <U16 (N,)

Frames are JPEG because a camera's frames are compressed anyway and raw noisy frames do not
compress; depth and masks are lossless. A shard is written to `NAME.tmp`, fsynced, then renamed,
so a file named `shard-*.npz` is always complete; its sha256 lives in the dataset index and is
checked on read, so a truncated or altered shard is never taken as valid.
"""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from pathlib import Path

import cv2
import numpy as np

from firmware_app.integrity import sha256_file as sha256_of
from train.synth.sample import Sample
from train.synth.sensor import encode_jpeg

JPEG_QUALITY = 95
DM_CODEC = 2  # see dm_codec above
_FIELDS = ("landmarks_2d", "landmarks_3d", "landmarks_visible", "intrinsics", "pose_deg", "face_box")
_DTYPES = {"landmarks_visible": bool}


class CorruptShardError(RuntimeError):
    """A shard that is missing, truncated or does not match its recorded hash."""


def _labelled_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _pack_depth_mask(sample: Sample) -> tuple[bytes, tuple[int, int, int, int]]:
    labelled = (sample.mask > 0) | (sample.depth_mm > 0)
    y0, y1, x0, x1 = _labelled_box(labelled)
    bits = np.ascontiguousarray(sample.depth_mm[y0:y1, x0:x1], dtype=np.float32).view(np.uint32)
    diff = bits.copy()
    diff[:, 1:] -= bits[:, :-1]  # uint32 arithmetic wraps: undone exactly by a cumulative sum
    planes = diff.view(np.uint8).reshape(*diff.shape, 4).transpose(2, 0, 1)
    mask = np.ascontiguousarray(sample.mask[y0:y1, x0:x1], dtype=np.uint8)
    rle = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)  # runs are what the planes hold: 1.4x faster
    blob = rle.compress(np.ascontiguousarray(planes).tobytes() + mask.tobytes()) + rle.flush()
    return blob, (y0, y1, x0, x1)


def _unpack_depth(raw: bytes, codec: int, hw: tuple[int, int]) -> np.ndarray:
    if codec == 1:
        return np.frombuffer(raw, np.float32).reshape(hw)
    planes = np.frombuffer(raw, np.uint8).reshape(4, *hw)
    diff = np.ascontiguousarray(planes.transpose(1, 2, 0)).view(np.uint32)[..., 0]
    return np.cumsum(diff, axis=1, dtype=np.uint32).view(np.float32)


def _concat(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), np.uint8), offsets


def encode_shard(samples: list[Sample]) -> dict[str, np.ndarray]:
    if not samples:
        raise ValueError("a shard needs at least one sample")
    hw = samples[0].depth_mm.shape
    if any(s.depth_mm.shape != hw for s in samples):
        raise ValueError("all samples of a shard must have the same frame size")
    jpegs = [s.rgb_jpeg or encode_jpeg(cv2.cvtColor(s.rgb, cv2.COLOR_RGB2BGR), JPEG_QUALITY) for s in samples]
    packed = [_pack_depth_mask(s) for s in samples]
    arrays = {}
    arrays["rgb_jpeg"], arrays["rgb_offsets"] = _concat(jpegs)
    arrays["dm_blob"], arrays["dm_offsets"] = _concat([blob for blob, _ in packed])
    arrays["dm_box"] = np.array([box for _, box in packed], np.int32)
    arrays["dm_codec"] = np.array(DM_CODEC, np.int32)
    arrays["image_hw"] = np.array(hw, np.int32)
    for name in _FIELDS:
        arrays[name] = np.stack([getattr(s, name) for s in samples]).astype(_DTYPES.get(name, np.float32))
    arrays["identity"] = np.array([s.identity for s in samples], np.int64)
    arrays["label"] = np.array([s.label for s in samples], "<U16")
    return arrays


def write_shard(path: Path, samples: list[Sample]) -> str:
    """Write atomically (tmp + fsync + rename); return the file's sha256.

    The bytes are hashed as they are written, so the new shard is not read back from disk.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    buffer = io.BytesIO()
    np.savez(buffer, **encode_shard(samples))
    data = buffer.getbuffer()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return hashlib.sha256(data).hexdigest()


class ShardReader:
    """Random access to the samples of one shard; decodes a sample only when asked."""

    def __init__(self, path: Path, expected_sha256: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise CorruptShardError(f"{self.path}: shard missing; regenerate the dataset (it resumes)")
        if expected_sha256 is not None and sha256_of(self.path) != expected_sha256:
            raise CorruptShardError(
                f"{self.path}: sha256 does not match the dataset index; delete it and rerun the "
                "dataset command to regenerate it"
            )
        try:
            with np.load(self.path, allow_pickle=False) as z:
                self._a = {k: z[k] for k in z.files}
        except Exception as exc:  # zipfile/numpy raise many types for a damaged file
            raise CorruptShardError(f"{self.path}: unreadable shard ({exc}); regenerate it") from exc

    def __len__(self) -> int:
        return len(self._a["identity"])

    @property
    def labels(self) -> np.ndarray:
        return self._a["label"]

    @property
    def identities(self) -> np.ndarray:
        return self._a["identity"]

    @property
    def pose_deg(self) -> np.ndarray:  # (N, 3) yaw, pitch, roll: these three read no frame
        return self._a["pose_deg"]

    @property
    def intrinsics(self) -> np.ndarray:  # (N, 3, 3)
        return self._a["intrinsics"]

    @property
    def face_box(self) -> np.ndarray:  # (N, 4) x0, y0, x1, y1
        return self._a["face_box"]

    @property
    def landmarks_3d(self) -> np.ndarray:  # (N, 68, 3) camera-frame mm
        return self._a["landmarks_3d"]

    def rgb(self, i: int) -> np.ndarray:
        a = self._a
        jpeg = a["rgb_jpeg"][a["rgb_offsets"][i] : a["rgb_offsets"][i + 1]]
        bgr = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        if bgr is None:
            raise CorruptShardError(f"{self.path}: frame {i} does not decode")
        return bgr[:, :, ::-1].copy()

    def depth_and_mask(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a = self._a
        h, w = (int(v) for v in a["image_hw"])
        y0, y1, x0, x1 = (int(v) for v in a["dm_box"][i])
        raw = zlib.decompress(a["dm_blob"][a["dm_offsets"][i] : a["dm_offsets"][i + 1]].tobytes())
        n = (y1 - y0) * (x1 - x0)
        depth = np.zeros((h, w), np.float32)
        mask = np.zeros((h, w), np.uint8)
        codec = int(a["dm_codec"]) if "dm_codec" in a else 1
        if codec not in (1, 2):
            raise CorruptShardError(f"{self.path}: depth codec {codec} is newer than this code; update it")
        depth[y0:y1, x0:x1] = _unpack_depth(raw[: 4 * n], codec, (y1 - y0, x1 - x0))
        mask[y0:y1, x0:x1] = np.frombuffer(raw[4 * n :], np.uint8).reshape(y1 - y0, x1 - x0)
        return depth, mask

    def sample(self, i: int) -> Sample:
        depth, mask = self.depth_and_mask(i)
        fields = {name: self._a[name][i] for name in _FIELDS}
        a = self._a
        return Sample(
            rgb=self.rgb(i),
            rgb_jpeg=a["rgb_jpeg"][a["rgb_offsets"][i] : a["rgb_offsets"][i + 1]].tobytes(),
            depth_mm=depth,
            mask=mask,
            identity=int(self._a["identity"][i]),
            label=str(self._a["label"][i]),
            **fields,
        )

    def __iter__(self):
        return (self.sample(i) for i in range(len(self)))
