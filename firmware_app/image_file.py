"""One image file → an RGB array, or an ImageFileError that says what is wrong (`predict`, replay folders).

OpenCV alone answers a missing file, a truncated JPEG or a header claiming 100 000 × 100 000 pixels with
a warning on stderr and either None, a half-grey image or a huge allocation. Here the header is read
first (PNG IHDR, JPEG SOF), the size is bounded, and a file that does not end where its format says it
ends (JPEG end-of-image marker, PNG IEND chunk) is refused rather than judged on made-up pixels: a
verdict on half a face must never be `live`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAX_FILE_BYTES = 64 << 20
MAX_PIXELS = 50_000_000  # 8K video is 33 Mpx; a camera frame far less
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageFileError(ValueError):
    """An image that cannot be used; the message names the file and the problem."""


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ValueError("PNG without its IHDR header")
    w, h = struct.unpack(">II", data[16:24])
    if b"IEND" not in data[-16:]:
        raise ValueError("truncated PNG (no IEND chunk at the end)")
    return w, h


def _jpeg_size(data: bytes) -> tuple[int, int]:
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ValueError("truncated JPEG (no end-of-image marker)")
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            raise ValueError("corrupt JPEG header")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        if marker == 0xDA or length < 2:  # start of scan before a frame header
            break
        i += 2 + length
    raise ValueError("JPEG without a frame header")


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header; None for other formats; ValueError when corrupt."""
    if data.startswith(PNG_MAGIC):
        return _png_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def read_rgb(path: Path | str) -> np.ndarray:
    """The image at `path` as (H, W, 3) uint8 RGB; ImageFileError for anything unusable."""
    import cv2

    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ImageFileError(f"{path}: is a directory, not an image file")
        if size > MAX_FILE_BYTES:
            raise ImageFileError(f"{path}: {size} bytes, larger than an image this tool reads "
                                 f"({MAX_FILE_BYTES >> 20} MiB)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except OSError as e:
        raise ImageFileError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        wh = header_size(data)
    except (ValueError, struct.error) as e:
        raise ImageFileError(f"{path}: {e}; re-copy or re-export the image") from None
    if wh is not None and (wh[0] * wh[1] > MAX_PIXELS or 0 in wh):
        raise ImageFileError(f"{path}: header says {wh[0]}×{wh[1]} pixels; this tool reads images of 1 to "
                             f"{MAX_PIXELS // 1_000_000} megapixels")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        bgr = None
    if bgr is None or bgr.ndim != 3 or bgr.size > 3 * MAX_PIXELS:
        raise ImageFileError(f"{path}: not a readable image (PNG, JPEG, BMP, ...)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
