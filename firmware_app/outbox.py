"""The on-disk outbox: an append-only JSON-lines event log with per-hook delivery cursors (thread-safe).

Layout, delivery semantics and the disk-full behaviour: firmware_app/events.py. Here: appends that are
durable (write + fsync before the event is visible) and all-or-nothing (a failed write is cut back off),
cursors replaced atomically, a torn last line cut on reopen, delivered segments pruned.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"events-(\d{8})\.jsonl$")


@dataclass(frozen=True, order=True)
class Cursor:
    segment: int
    offset: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    """Append-only JSON-lines event log with per-hook cursors; thread-safe."""

    def __init__(self, directory: Path | str, fsync: bool = True, segment_bytes: int = 1 << 20):
        self.dir = Path(directory)
        self.fsync, self.segment_bytes = fsync, segment_bytes
        self.cursor_dir = self.dir / "cursors"
        self.cursor_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.appended = 0
        segs = self.segments()
        self._segment = segs[-1] if segs else 1
        self._repair(self._path(self._segment))
        self._fd = self._open(self._segment)  # raw fd: a failed write leaves nothing in a buffer
        self._size = os.fstat(self._fd).st_size
        self._end = Cursor(self._segment, self._size)
        if not segs and fsync:
            _fsync_dir(self.dir)

    def _open(self, segment: int) -> int:
        return os.open(self._path(segment), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _path(self, segment: int) -> Path:
        return self.dir / f"events-{segment:08d}.jsonl"

    def segments(self) -> list[int]:
        return sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _SEGMENT.match(p.name)))

    @staticmethod
    def _repair(path: Path) -> None:
        """Cut a torn last line (a crash during a write) so every line in the file is complete."""
        if not path.is_file() or path.stat().st_size == 0:
            return
        data = path.read_bytes()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        log.warning("%s: cutting a torn last line (%d bytes) left by a crash", path.name, len(data) - keep)
        with open(path, "r+b") as f:
            f.truncate(keep)
            os.fsync(f.fileno())

    def append(self, event: dict) -> None:
        """Write one event durably; returns only after it is on disk (when fsync is on).

        OSError (ENOSPC, EIO, ...) when it could not be: then the file holds exactly what it held
        before (a partly written line is cut off again), and no reader ever saw any of it.
        """
        line = json.dumps(event, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        with self._lock:
            if self._size > 0 and self._size + len(line) > self.segment_bytes:
                self._rotate()
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view):]
                if self.fsync:
                    os.fsync(self._fd)
            except OSError:
                self._cut_back()
                raise
            self._size += len(line)
            self.appended += 1
            self._end = Cursor(self._segment, self._size)
            self._changed.notify_all()

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)  # shrinking needs no space
        except OSError as e:  # the next open's _repair cuts a torn line anyway
            log.error("outbox: cannot cut a partly written event off %s: %s", self._path(self._segment), e)

    def _rotate(self) -> None:
        """Start the next segment; on failure (no space for the directory entry) nothing has changed."""
        fd = self._open(self._segment + 1)
        try:
            if self.fsync:
                _fsync_dir(self.dir)
        except OSError:
            os.close(fd)
            raise
        os.close(self._fd)
        self._fd, self._segment, self._size = fd, self._segment + 1, 0

    def free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self.dir)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def end(self) -> Cursor:
        with self._lock:
            return self._end

    def wait(self, after: Cursor, timeout: float) -> None:
        """Block until something is appended beyond `after` (or timeout)."""
        with self._lock:
            if self._end <= after:
                self._changed.wait(timeout)

    def read(self, cursor: Cursor, limit: int = 100) -> tuple[list[tuple[dict | None, Cursor]], Cursor]:
        """Up to `limit` (event, cursor after it) from `cursor`, and the cursor where reading stopped.

        An unparsable line gives (None, cursor after it). The returned cursor may be past the last
        event when reading moved on to a newer segment.
        """
        out: list[tuple[dict | None, Cursor]] = []
        end = self.end()
        while len(out) < limit and cursor < end:
            path = self._path(cursor.segment)
            try:
                with open(path, "rb") as f:
                    f.seek(cursor.offset)
                    for line in f:
                        if not line.endswith(b"\n") or len(out) >= limit:
                            break
                        cursor = Cursor(cursor.segment, cursor.offset + len(line))
                        try:
                            out.append((json.loads(line), cursor))
                        except ValueError:
                            log.error("%s at byte %d: not a JSON event; skipped", path.name, cursor.offset)
                            out.append((None, cursor))
            except FileNotFoundError:
                pass
            if len(out) < limit and cursor.segment < end.segment:
                cursor = Cursor(self._next_segment(cursor.segment, end.segment), 0)
            else:
                break
        return out, cursor

    def _next_segment(self, segment: int, last: int) -> int:
        later = [s for s in self.segments() if s > segment]
        return later[0] if later else last

    # cursors -------------------------------------------------------------------------------------
    def load_cursor(self, hook: str) -> Cursor:
        path = self.cursor_dir / f"{hook}.json"
        try:
            d = json.loads(path.read_text())
            return Cursor(int(d["segment"]), int(d["offset"]))
        except FileNotFoundError:
            segs = self.segments()
            return Cursor(segs[0] if segs else 1, 0)  # a new hook gets everything still in the outbox
        except (ValueError, KeyError, TypeError) as e:
            log.error("%s: unreadable cursor (%s); redelivering from the oldest event", path, e)
            segs = self.segments()
            return Cursor(segs[0] if segs else 1, 0)

    def save_cursor(self, hook: str, cursor: Cursor) -> None:
        """Atomically replace the hook's cursor file; OSError (the old cursor stays) when it cannot."""
        path = self.cursor_dir / f"{hook}.json"
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as f:
                json.dump({"segment": cursor.segment, "offset": cursor.offset}, f)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def prune(self, hooks: list[str]) -> None:
        """Delete segments that every hook has fully passed (never the one being written)."""
        if not hooks:
            return
        oldest = min(self.load_cursor(h).segment for h in hooks)
        for seg in self.segments():
            if seg < oldest and seg < self._segment:
                self._path(seg).unlink(missing_ok=True)
                log.debug("outbox: deleted delivered segment %d", seg)

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)
