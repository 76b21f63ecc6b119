"""A rendered clip (a folder of PNG frames) as a compressed video file, for benchmarks that replay what a
recording would hold: every frame the field replays from a camera's recording went through a lossy codec,
which blurs the fine texture the depth network and the motion cue read and adds block edges.

    encode_clip(Path("out/bench/liveness/clips/00000_bona_fide_walk"), "mp4v", 10.0) -> .../clip_mp4v.mp4

Encoded once and reused (the file is named after the codec). Codecs are those this OpenCV build can write
without hardware: mp4v (MPEG-4 part 2, in .mp4) and MJPG (motion JPEG, in .avi).
"""

from __future__ import annotations

from pathlib import Path

import cv2

CODECS = {"mp4v": ".mp4", "MJPG": ".avi"}


class EncodeError(RuntimeError):
    """The clip could not be written as video; the message says why."""


def encode_clip(clip_dir: Path, codec: str, fps: float) -> Path:
    """The clip's frames (frame_*.png, in order) written with `codec`; the file's path."""
    if codec not in CODECS:
        raise EncodeError(f"unknown codec {codec!r} (this build writes {', '.join(CODECS)})")
    out = clip_dir / f"clip_{codec}{CODECS[codec]}"
    frames = sorted(clip_dir.glob("frame_*.png"))
    if not frames:
        raise EncodeError(f"{clip_dir}: no frame_*.png to encode")
    if out.is_file() and out.stat().st_mtime >= max(f.stat().st_mtime for f in frames):
        return out
    first = cv2.imread(str(frames[0]))
    if first is None:
        raise EncodeError(f"{frames[0]}: not a readable image; render the clip again")
    tmp = out.with_name(out.stem + ".part" + out.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, first.shape[1::-1])
    if not writer.isOpened():
        raise EncodeError(f"OpenCV cannot write {codec} here (its FFmpeg backend lacks the encoder)")
    try:
        for f in frames:
            bgr = cv2.imread(str(f))
            if bgr is None or bgr.shape != first.shape:
                raise EncodeError(f"{f}: unreadable, or not the first frame's size; render the clip again")
            writer.write(bgr)
    finally:
        writer.release()
    tmp.replace(out)  # a half-written file never passes for a clip
    return out
