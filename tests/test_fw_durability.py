"""A full disk is a state, not a crash: the outbox on a REAL size-limited filesystem (a 512 KiB tmpfs,
mounted here; needs root, else skipped) delivering to a REAL HTTP receiver.

What must hold (DESIGN "Events", issue 14): publishing never raises; an event that cannot be persisted
reaches no hook (fail closed) and is counted; every event that was persisted is delivered, once in a
run without crashes; the hook worker survives a cursor it cannot save; `degraded()` says so while it
lasts and clears by itself when space returns; /healthz of the daemon goes 503 meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from firmware_app.config import HttpHookConfig
from firmware_app.events import Dispatcher, Outbox, new_event
from firmware_app.hooks.http import HttpHook
from tests.test_fw_events import Receiver

SECRET = "k"


@pytest.fixture
def small_fs(tmp_path):
    """A 512 KiB tmpfs: ENOSPC for real, from the kernel."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(fs: Path) -> Path:
    """Take every free byte of fs; returns the filler file (unlink it to give the space back)."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _dispatcher(fs: Path, rx: Receiver) -> Dispatcher:
    hook = HttpHook(HttpHookConfig(name="door", url=rx.url, secret=SECRET, timeout_s=2))
    outbox = Outbox(fs / "outbox", fsync=True, segment_bytes=4096)  # small segments: rotation on a full disk
    return Dispatcher(outbox, [hook], retry_s=0.02, retry_max_s=0.1)


def _wait(cond, timeout=15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_full_disk_is_a_state_not_a_crash(small_fs):
    rx = Receiver(secret=SECRET, delay_s=0.01)  # a little slow: a backlog is delivered while the disk is full
    d = _dispatcher(small_fs, rx)
    d.start()
    persisted, dropped = [], []

    def publish(n, decision="live"):
        for i in range(n):
            e = new_event("decision", decision=decision, n=i, pad="x" * 200)
            (persisted if d.publish(e) else dropped).append(e["id"])

    publish(30)
    filler = fill(small_fs)
    publish(30, "spoof")  # the disk is full: refused one by one, never an exception
    assert len(dropped) >= 25 and "outbox cannot persist events" in d.degraded()
    assert all(w.is_alive() for w in d.workers)
    # the backlog goes on being delivered with no room for its cursor: the worker lives and says why
    assert _wait(lambda: not d.workers[0].pending())
    assert d.workers[0].is_alive() and "cursor not saved" in d.degraded()

    filler.unlink()  # space returns: the next publish persists, the cursor lands, all clear by itself
    publish(10)
    assert d.degraded().count("outbox cannot persist") == 0
    assert d.drain(15) and _wait(lambda: d.degraded() == ""), d.degraded()
    d.close()
    rx_ids = rx.ids()
    assert set(rx_ids) == set(persisted)  # nothing persisted lost
    assert len(rx_ids) == len(set(rx_ids))  # nothing delivered twice
    assert not set(dropped) & set(rx_ids)  # what could not be persisted never reached the hook
    assert d.dropped == len(dropped)
    lines = [ln for seg in sorted((small_fs / "outbox").glob("events-*.jsonl")) for ln in seg.read_bytes()
             .splitlines(keepends=True)]
    assert all(ln.endswith(b"\n") and json.loads(ln) for ln in lines)  # no half-written line left behind

    # a restart resumes from the saved cursor: nothing is delivered again
    d2 = _dispatcher(small_fs, rx)
    d2.start()
    time.sleep(0.3)
    assert d2.drain(5)
    d2.close()
    rx.close()
    assert len(rx.ids()) == len(rx_ids)


def test_full_disk_is_seen_without_a_decision_and_so_is_its_end(small_fs):
    rx = Receiver(secret=SECRET)
    d = _dispatcher(small_fs, rx)
    filler = fill(small_fs)
    d.start()
    assert "outbox cannot persist events" in d.degraded() and d.dropped == 0
    filler.unlink()
    assert _wait(lambda: d.degraded() == "", 5)
    d.close()
    rx.close()


def test_outbox_append_is_all_or_nothing(small_fs):
    box = Outbox(small_fs / "outbox", fsync=True, segment_bytes=1 << 20)
    box.append(new_event("decision", decision="live"))
    size = (small_fs / "outbox" / "events-00000001.jsonl").stat().st_size
    fill(small_fs)
    big = new_event("decision", decision="live", pad="y" * 20000)
    with pytest.raises(OSError):
        box.append(big)
    assert (small_fs / "outbox" / "events-00000001.jsonl").stat().st_size == size  # cut back off
    assert box.end().offset == size and box.appended == 1
    events, _ = box.read(box.load_cursor("x"))
    assert len(events) == 1
    box.close()


def test_worker_loop_failure_restarts_and_dead_worker_is_degraded(tmp_path):
    rx = Receiver(secret=SECRET)
    d = _dispatcher(tmp_path, rx)
    real_read, calls = d.outbox.read, {"n": 0}

    def flaky_read(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected")
        return real_read(*a, **k)

    d.outbox.read = flaky_read
    d.start()
    e = new_event("decision", decision="live")
    assert d.publish(e)
    assert _wait(lambda: rx.ids() == [e["id"]])
    assert d.workers[0].restarts == 1 and d.workers[0].is_alive() and d.degraded() == ""
    d.close()
    # a worker that is gone (not stopping) takes health down
    d = _dispatcher(tmp_path / "b", rx)
    d.workers[0].run = lambda: None
    d.start()
    d.workers[0].join(2)
    assert "delivery worker stopped" in d.degraded()
    d.stop.set()
    rx.close()


def test_unserialisable_event_is_refused_not_raised(tmp_path):
    d = _dispatcher(tmp_path, Receiver(secret=SECRET))
    assert d.publish(new_event("decision", decision="live", score=float("nan"))) is False
    assert d.dropped == 1 and "outbox cannot persist" in d.degraded() and d.outbox.appended == 0
    assert d.publish(new_event("decision", decision="spoof")) and d.degraded() == ""
    d.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


@pytest.mark.slow
def test_daemon_keeps_running_on_a_full_disk_and_recovers(small_fs, tmp_path):
    """The real daemon (tiny bundle, looping replay) with its outbox on a full tmpfs."""
    from tests.test_fw_daemon import REPO, _config
    from tests.test_fw_fixtures import free_port

    rx = Receiver(secret=SECRET)
    port = free_port()
    camera = {"type": "replay", "source": str(__import__("tests.test_fw_fixtures", fromlist=["x"])
                                              .synthetic_frames()), "loop": True, "fps": 30, "hold_frames": 2}
    cfg = _config(tmp_path, rx, camera=camera, http={"enabled": True, "port": port},
                  outbox={"dir": str(small_fs / "outbox"), "retry_s": 0.05, "retry_max_s": 0.2})
    filler = fill(small_fs)  # full before the start: degraded before any decision (the start's probe)
    env = {**os.environ, "HOOK_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "firmware_app", "run", "--config", str(cfg)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        assert _wait(lambda: "outbox cannot persist" in _get(base + "/status")[1], 60), "never degraded"
        assert _get(base + "/healthz")[0] == 503 and proc.poll() is None
        assert rx.ids() == []  # nothing undurable was delivered
        filler.unlink()
        assert _wait(lambda: _get(base + "/healthz")[0] == 200, 60), _get(base + "/status")[1]
        assert _wait(lambda: len(rx.ids()) > 0, 30)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        rx.close()
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert "cannot persist events" in err and ("writable again" in err or "persisting again" in err)


def test_decision_panels_keep_the_newest_and_count_what_was_there(tmp_path):
    from firmware_app.config import parse_config
    from firmware_app.panel_files import PanelFiles

    folder = tmp_path / "panels"
    folder.mkdir()
    for k in range(3):  # a previous run's panels, oldest first
        (folder / f"old{k}.png").write_bytes(b"png")
        os.utime(folder / f"old{k}.png", (1_000_000 + k, 1_000_000 + k))
    panels = PanelFiles(folder, keep=4)
    rgb = np.zeros((8, 8, 3), np.uint8)
    paths = [panels.save(f"new{k}", rgb) for k in range(3)]
    assert all(Path(p).is_file() for p in paths)
    assert sorted(p.name for p in folder.iterdir()) == ["new0.png", "new1.png", "new2.png", "old2.png"]
    assert PanelFiles(tmp_path / "all", keep=0).save("x", rgb)
    assert len(list((tmp_path / "all").iterdir())) == 1
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert PanelFiles(blocked, keep=2).save("y", rgb) == ""  # logged, not raised: the loop goes on
    assert parse_config("camera: {source: '-'}").liveness.save_depth_keep == 1000
