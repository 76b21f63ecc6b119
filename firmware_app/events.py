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

A full (or failing) disk is a state, not a crash: an append that cannot be written and fsync'd is cut
back off the file and `Dispatcher.publish` returns False; that decision reaches no hook (fail closed:
an event that cannot be persisted never opens the door), the events already held stay and are
delivered, and `Dispatcher.degraded()` says why until an append succeeds again. A cursor that cannot be
saved is kept in memory and saved when it can (worst case after a crash: a redelivery, same event id).
A hook worker whose loop fails is restarted; a worker that is gone shows in `degraded()` too.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import uuid
from datetime import datetime, timezone

from firmware_app.outbox import Cursor, Outbox  # noqa: F401 (Cursor, Outbox: re-exported)

log = logging.getLogger(__name__)

EVENT_SCHEMA = "facedepth-event/1"
PROBE_BYTES = 4096  # more than an event: room for this means room for the next decision


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
        self.delivered = self.skipped = self.failures = self.restarts = 0
        self.last_error = ""
        self.cursor_error = ""  # why the in-memory cursor is not on disk yet ('' = it is)

    def run(self) -> None:
        """The delivery loop, restarted after any failure of its own (the cursor in memory is kept)."""
        while not self.stop.is_set():
            try:
                self._loop()
            except Exception as e:  # a bug or the disk: this worker must not die silently
                self.restarts += 1
                self.last_error = f"{type(e).__name__}: {e}"
                delay = min(self.retry_s * 2 ** min(self.restarts, 16), self.retry_max_s)
                log.exception("hook %s: delivery loop failed; restart %d in %.1f s", self.hook.name,
                              self.restarts, delay)
                self.stop.wait(delay)

    def _loop(self) -> None:
        while not self.stop.is_set():
            batch, position = self.outbox.read(self.cursor)
            for event, cursor in batch:
                if not self._deliver(event):
                    return  # stopping: the cursor stays before this event
                self.cursor = cursor
                self._save_cursor()
            if position != self.cursor:  # moved on to a newer segment
                self.cursor = position
                self._save_cursor()
            if not batch:
                self.outbox.wait(self.cursor, 0.5)
                if self.cursor_error:
                    self._save_cursor()  # retried while idle, so it lands as soon as there is space
                continue
            if self.on_pass:
                self.on_pass()

    def _save_cursor(self) -> None:
        try:
            self.outbox.save_cursor(self.hook.name, self.cursor)
        except OSError as e:
            if not self.cursor_error:
                log.error("hook %s: cannot save its delivery cursor (%s); delivery goes on, the cursor is "
                          "saved when the disk allows (a restart before then redelivers, same event ids)",
                          self.hook.name, e.strerror or e)
            self.cursor_error = e.strerror or str(e)
            return
        if self.cursor_error:
            log.info("hook %s: delivery cursor saved again", self.hook.name)
            self.cursor_error = ""

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
            "running": self.is_alive(),
            "restarts": self.restarts,
            "cursor_error": self.cursor_error,
        }


class Dispatcher:
    """The outbox plus one HookWorker per hook."""

    def __init__(self, outbox: Outbox, hooks: list, retry_s: float = 1.0, retry_max_s: float = 60.0,
                 probe_s: float = 10.0):
        self.outbox, self.hooks = outbox, hooks
        self.retry_s, self.probe_s = retry_s, probe_s
        self.stop = threading.Event()
        self._last_prune = 0.0
        self.started = False
        self.dropped = 0  # decisions that could not be persisted (so were never delivered)
        self.append_error = ""  # why the last append failed; '' once one succeeds again
        self._failing_since: float | None = None
        self._probe_lock = threading.Lock()
        self._probed = 0.0
        self.workers = [
            HookWorker(h, outbox, self.stop, retry_s, retry_max_s, self._maybe_prune) for h in hooks
        ]

    def start(self) -> None:
        self.started = True
        self._probe()  # a disk that is already full shows before the first decision
        for w in self.workers:
            w.start()

    def publish(self, event: dict) -> bool:
        """Persist the event for the hooks; False (logged, counted) when it cannot be: then no hook sees
        it, whatever it says (fail closed), and the daemon goes on. Each publish retries the disk."""
        try:
            self.outbox.append(event)
        except (OSError, ValueError) as e:  # ValueError: not strict JSON (NaN) — refused, never half-written
            self.dropped += 1
            self._failing(getattr(e, "strerror", None) or str(e))
            log.error("%s %s (event %s) not persisted, not delivered: %s", event.get("type", "event"),
                      event.get("decision", ""), event.get("id"), self.append_error)
            return False
        self._recovered("persisting again")
        return True

    def _failing(self, error: str) -> None:
        self.append_error = error
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error("outbox %s: cannot persist events (%s; %s bytes free): decisions are NOT delivered "
                      "(the door stays shut) until it can; the events it holds are kept and delivered",
                      self.outbox.dir, error, self.outbox.free_bytes())

    def _recovered(self, how: str) -> None:
        if self._failing_since is not None:
            log.warning("outbox %s: %s after %.1f s; %d event(s) were dropped meanwhile", self.outbox.dir,
                        how, time.monotonic() - self._failing_since, self.dropped)
            self._failing_since, self.append_error = None, ""

    def _probe(self) -> None:
        """Write and fsync PROBE_BYTES beside the outbox: a full disk is seen (and its end) without waiting
        for a decision to fail. Run at start and from degraded() (every probe_s; retry_s while failing)."""
        with self._probe_lock:
            self._probed = time.monotonic()
            path = self.outbox.dir / ".probe"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    if os.write(fd, b"\0" * PROBE_BYTES) != PROBE_BYTES:
                        raise OSError(errno.ENOSPC, "No space left on device")
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                self._failing(e.strerror or str(e))
            else:
                self._recovered("writable again")
            finally:
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass

    def degraded(self) -> str:
        """'' when events persist and every hook worker runs; else why not, for /healthz and /status."""
        every = self.retry_s if self.append_error else self.probe_s
        if self.started and time.monotonic() - self._probed > every:
            self._probe()
        why = []
        if self.append_error:
            why.append(f"outbox cannot persist events ({self.append_error}; {self.dropped} dropped): "
                       "decisions are not delivered")
        for w in self.workers:
            if self.started and not w.is_alive() and not self.stop.is_set():
                why.append(f"hook {w.hook.name}: delivery worker stopped ({w.last_error or 'no reason'})")
            elif w.cursor_error:
                why.append(f"hook {w.hook.name}: delivery cursor not saved ({w.cursor_error})")
        return "; ".join(why)

    def outbox_status(self) -> dict:
        return {"dir": str(self.outbox.dir), "degraded": self.degraded(), "dropped": self.dropped,
                "appended": self.outbox.appended, "free_bytes": self.outbox.free_bytes()}

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
            if w.ident is not None:  # started
                w.join(max(0.0, deadline - time.monotonic()))
        for h in self.hooks:
            try:
                h.close()
            except Exception as e:
                log.warning("hook %s: close failed: %s", h.name, e)
        self.outbox.close()

    def status(self) -> dict:
        return {w.hook.name: w.status() for w in self.workers}
