"""Decision events, the on-disk outbox, and the per-hook delivery workers.

Outbox layout (one directory):

    events-00000001.jsonl   JSON lines, one event each, appended and fsync'd before any hook sees it
    events-00000002.jsonl   a new segment starts when the current one passes `segment_bytes`
    cursors/<hook>.json     {"segment": 2, "offset": 4711}: where that hook's delivery resumes

Delivery is at-least-once: a hook's cursor moves past an event only after the hook accepted it (the
cursor file is replaced atomically), so after a crash or kill -9 the last event may be delivered again;
receivers de-duplicate by the event's `id` (a uuid4). A line torn by a crash (no trailing newline) was
never visible to a hook and is cut off when the outbox is reopened. Segments every hook has passed are
deleted. A failed delivery is retried with exponential backoff, for ever; other hooks are not held up.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

EVENT_SCHEMA = "facedepth-event/1"
_SEGMENT = re.compile(r"events-(\d{8})\.jsonl$")


def new_event(kind: str, **fields) -> dict:
    """An event dict with a unique id and wall-clock time; fields must be JSON-serialisable."""
    now = time.time()
    return {
        "schema": EVENT_SCHEMA,
        "id": uuid.uuid4().hex,
        "type": kind,
        "time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds"),
        "unix_time": round(now, 3),
        **fields,
    }


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
        self._file = open(self._path(self._segment), "ab")  # noqa: SIM115 (kept open for appends)
        self._end = Cursor(self._segment, self._file.tell())
        if not segs and fsync:
            _fsync_dir(self.dir)

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
        """Write one event durably; returns only after it is on disk (when fsync is on)."""
        line = json.dumps(event, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        with self._lock:
            if self._file.tell() > 0 and self._file.tell() + len(line) > self.segment_bytes:
                self._rotate()
            self._file.write(line)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self.appended += 1
            self._end = Cursor(self._segment, self._file.tell())
            self._changed.notify_all()

    def _rotate(self) -> None:
        self._file.close()
        self._segment += 1
        self._file = open(self._path(self._segment), "ab")  # noqa: SIM115
        if self.fsync:
            _fsync_dir(self.dir)

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
        path = self.cursor_dir / f"{hook}.json"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"segment": cursor.segment, "offset": cursor.offset}, f)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)

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
            self._file.close()


class HookWorker(threading.Thread):
    """Delivers the outbox to one hook, in order, from its saved cursor; retries with backoff."""

    def __init__(
        self,
        hook,
        outbox: Outbox,
        stop: threading.Event,
        retry_s: float = 1.0,
        retry_max_s: float = 60.0,
        on_pass=None,
    ):
        super().__init__(name=f"hook-{hook.name}", daemon=True)
        self.hook, self.outbox, self.stop = hook, outbox, stop
        self.retry_s, self.retry_max_s = retry_s, retry_max_s
        self.on_pass = on_pass
        self.cursor = outbox.load_cursor(hook.name)
        self.delivered = self.skipped = self.failures = 0
        self.last_error = ""

    def run(self) -> None:
        while not self.stop.is_set():
            batch, position = self.outbox.read(self.cursor)
            for event, cursor in batch:
                if not self._deliver(event):
                    return  # stopping: the cursor stays before this event
                self.cursor = cursor
                self.outbox.save_cursor(self.hook.name, cursor)
            if position != self.cursor:  # moved on to a newer segment
                self.cursor = position
                self.outbox.save_cursor(self.hook.name, position)
            if not batch:
                self.outbox.wait(self.cursor, 0.5)
                continue
            if self.on_pass:
                self.on_pass()

    def _deliver(self, event: dict | None) -> bool:
        if event is None or not self.hook.wants(event):
            self.skipped += 1
            return True
        attempt = 0
        while not self.stop.is_set():
            try:
                self.hook.deliver(event)
                self.delivered += 1
                if attempt:
                    log.info(
                        "hook %s: event %s delivered after %d retries", self.hook.name, event["id"], attempt
                    )
                return True
            except Exception as e:  # any hook failure is retried; the daemon must not stop
                if getattr(e, "permanent", False):
                    log.error(
                        "hook %s: event %s rejected, not retried: %s", self.hook.name, event.get("id"), e
                    )
                    self.skipped += 1
                    return True
                attempt += 1
                self.failures += 1
                self.last_error = str(e)
                delay = min(self.retry_s * 2 ** (attempt - 1), self.retry_max_s)
                log.warning(
                    "hook %s: delivery of %s failed (%s); retry %d in %.1f s",
                    self.hook.name,
                    event.get("id"),
                    e,
                    attempt,
                    delay,
                )
                self.stop.wait(delay)
        return False

    def pending(self) -> bool:
        return self.cursor < self.outbox.end()

    def status(self) -> dict:
        return {
            "delivered": self.delivered,
            "skipped": self.skipped,
            "failures": self.failures,
            "pending": self.pending(),
            "last_error": self.last_error,
        }


class Dispatcher:
    """The outbox plus one HookWorker per hook."""

    def __init__(self, outbox: Outbox, hooks: list, retry_s: float = 1.0, retry_max_s: float = 60.0):
        self.outbox, self.hooks = outbox, hooks
        self.stop = threading.Event()
        self._last_prune = 0.0
        self.workers = [
            HookWorker(h, outbox, self.stop, retry_s, retry_max_s, self._maybe_prune) for h in hooks
        ]

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def publish(self, event: dict) -> None:
        self.outbox.append(event)

    def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune > 5.0:
            self._last_prune = time.monotonic()
            self.outbox.prune([h.name for h in self.hooks])

    def drain(self, timeout: float) -> bool:
        """Wait until every hook has delivered everything; False on timeout."""
        deadline = time.monotonic() + timeout
        while any(w.pending() for w in self.workers):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self, timeout: float = 1.0) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout
        for w in self.workers:
            w.join(max(0.0, deadline - time.monotonic()))
        for h in self.hooks:
            try:
                h.close()
            except Exception as e:
                log.warning("hook %s: close failed: %s", h.name, e)
        self.outbox.close()

    def status(self) -> dict:
        return {w.hook.name: w.status() for w in self.workers}
