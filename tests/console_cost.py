"""What one browser on the live page costs the camera loop (`python -m tests.console_live cost`).

The daemon runs in this process, as in production (the page is served by the daemon's own threads),
replaying the bona fide scene of the quick-start clip as fast as it can (camera.fps 0: the frame rate
is the loop's throughput). Windows alternate without and with one headless chromium tab on /live
(A B A B …, so a drifting background load hits both alike), and report per window:

  - the camera loop's frame rate,
  - CPU time of the camera loop thread per frame, and of the HTTP + console threads per second
    (psutil per-thread times: the page's cost independent of what else runs on the machine).

Chromium runs at nice 19: on a real door it runs on the installer's phone, not on the device.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import psutil

from tests.chromium import Chromium
from tests.console_live import TOKEN, _free_port, daemon_config, render_clip, split_scenes


def _thread_cpu(native_ids: set[int]) -> float:
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in native_ids)


def cost(seconds: float, work: Path, rounds: int = 3) -> int:
    from firmware_app.__main__ import _build_daemon, _bundle
    from firmware_app.config import load_config
    from firmware_app.http_server import StatusServer

    scenes = split_scenes(render_clip(work / "clip"), work / "scenes")
    port = _free_port()
    cfg = load_config(daemon_config(scenes["bona_fide"], work / "state-cost", port, fps=0.0))
    daemon = _build_daemon(cfg, _bundle(cfg.depth.bundle, cfg.depth.trusted_keys))
    server = StatusServer.from_config(daemon, cfg.http).start()
    loop = threading.Thread(target=daemon.run, name="camera-loop", daemon=True)
    loop.start()
    time.sleep(3.0)  # warm up: model, caches
    rows = []
    with Chromium(prefix=("nice", "-n", "19")) as browser:
        page = None
        for i in range(2 * rounds):
            with_page = i % 2 == 1
            if with_page:
                page = browser.page(f"http://127.0.0.1:{port}/live?token={TOKEN}")
                time.sleep(1.0)
            cam = {loop.native_id}
            http = {t.native_id for t in threading.enumerate() if t.name.startswith(("http", "console"))}
            f0, c0, h0, t0 = daemon.profiler.frames, _thread_cpu(cam), _thread_cpu(http), time.monotonic()
            polls0 = page.eval("window.__live.polls") if with_page else 0
            time.sleep(seconds)
            http = {t.native_id for t in threading.enumerate() if t.name.startswith(("http", "console"))}
            f1, c1, h1, t1 = daemon.profiler.frames, _thread_cpu(cam), _thread_cpu(http), time.monotonic()
            polls = (page.eval("window.__live.polls") - polls0) if with_page else 0
            rows.append((with_page, (f1 - f0) / (t1 - t0), 1000 * (c1 - c0) / max(f1 - f0, 1),
                         1000 * (h1 - h0) / (t1 - t0), polls / (t1 - t0)))
            if with_page:
                page.call("Page.close")
                page = None
                time.sleep(6.0)  # the console sampler stops 5 s after the last poll
    daemon.request_stop()
    loop.join(10)
    server.close()
    print(f"{'window':>10} {'frames/s':>9} {'loop CPU ms/frame':>18} {'http+console CPU ms/s':>22} "
          f"{'polls/s':>8}")
    for with_page, fps, loop_ms, http_ms, polls in rows:
        name = "browser" if with_page else "none"
        print(f"{name:>10} {fps:9.2f} {loop_ms:18.1f} {http_ms:22.1f} {polls:8.2f}")
    a = [r for r in rows if not r[0]]
    b = [r for r in rows if r[0]]
    fps_a, fps_b = float(np.median([r[1] for r in a])), float(np.median([r[1] for r in b]))
    loop_ms = float(np.median([r[2] for r in rows]))
    page_ms = float(np.median([r[3] for r in b])) - float(np.median([r[3] for r in a]))
    print(f"frame rate (median of {len(a)} windows each) without a browser {fps_a:.2f}/s, with one on /live "
          f"{fps_b:.2f}/s: {100 * (fps_a - fps_b) / fps_a:+.1f} % (wall clock; noisy on a shared machine)")
    print(f"the page's threads use {page_ms:.1f} ms CPU per second; the camera loop {loop_ms:.1f} ms per "
          f"frame. Even on one core fully used by the loop that takes at most {page_ms / 10:.1f} % of its "
          "frame rate")
    return 0
