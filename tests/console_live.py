"""The live page on the quick-start clip: for the browser tests, the README screenshots, the cost benchmark.

    python -m tests.console_live shots [--docs docs]        page screenshots: bona fide, print, tablet
    python -m tests.console_live cost [--seconds 20]        camera-loop frame rate with and without a browser

The clip (`python -m train.synth.clip`, as `make qs-clip` renders it) is split by its labels into one
folder per scene, and the daemon (`python -m firmware_app run`, the committed bundle/default) replays one
scene in a loop with the live page on; headless chromium opens /live.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import yaml

from tests.chromium import Chromium

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundle" / "default"
TOKEN = "console-test-token"
SCENES = ("bona_fide", "print_flat", "replay_tablet")


def render_clip(out: Path, seconds: float = 4, fps: float = 10, seed: int = 0) -> Path:
    """The quick-start clip in `out` (rendered once; ~7 s)."""
    if not (out / "labels.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "train.synth.clip", "--out", str(out),
                        "--seconds", str(seconds),
                        "--fps", str(fps), "--seed", str(seed)], cwd=REPO, check=True, capture_output=True)
    return out


def split_scenes(clip: Path, out: Path) -> dict[str, Path]:
    """One folder of symlinks per labelled scene (the replay camera reads a folder in name order)."""
    labels = json.loads((clip / "labels.json").read_text())
    folders = {}
    for name, label in sorted(labels.items()):
        if label in SCENES:
            d = folders.setdefault(label, out / label)
            d.mkdir(parents=True, exist_ok=True)
            if not (d / name).exists():
                (d / name).symlink_to(clip / name)
    return folders


def trusted_keys() -> list[str]:
    pub = REPO / "keys" / "dev" / "signing.pub"
    return [pub.read_text().strip()] if pub.is_file() else []


def daemon_config(scene: Path, state: Path, port: int, fps: float = 10.0, hooks=()) -> Path:
    cfg = {
        "camera": {"type": "replay", "source": str(scene), "loop": True, "fps": fps},
        "depth": {"bundle": str(BUNDLE), "trusted_keys": trusted_keys()},
        # held frames: still pictures in short tracks, so no motion gate and no minimum track age
        "liveness": {"save_depth_dir": str(state / "decisions"), "min_moved_px": 0, "min_track_s": 0},
        "outbox": {"dir": str(state / "outbox"), "fsync": False},
        "hooks": list(hooks),
        "http": {"enabled": True, "port": port, "preview": True, "token": TOKEN},
        "logging": {"level": "WARNING"},
    }
    path = state / "daemon.yaml"
    state.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


class Daemon:
    """`python -m firmware_app run` in a subprocess, up when /healthz answers 200."""

    def __init__(self, config: Path, port: int):
        self.port, self.config = port, config
        self.proc = subprocess.Popen([sys.executable, "-m", "firmware_app", "run", "--config", str(config)],
                                     cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
            try:
                auth = {"Authorization": f"Bearer {TOKEN}"}
                req = urllib.request.Request(self.url("/healthz"), headers=auth)
                if urllib.request.urlopen(req, timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.close()
        raise RuntimeError("daemon not healthy within 60 s")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def outbox_events(self) -> list[dict]:
        outbox = Path(yaml.safe_load(self.config.read_text())["outbox"]["dir"])
        files = sorted(outbox.glob("events-*.jsonl"))
        return [json.loads(line) for f in files for line in f.read_text().splitlines()]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stderr.close()


FACE_SHOWN = ("document.body.dataset.frame && getComputedStyle(document.getElementById('overlay')).display"
              " === 'block' && document.getElementById('depth').style.visibility === 'visible'")


def rect(page, element_id: str) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) CSS pixels of an element in the viewport."""
    r = page.eval(f"(r => [r.left, r.top, r.right, r.bottom])(document.getElementById('{element_id}')"
                  ".getBoundingClientRect())")
    return tuple(int(round(v)) for v in r)


def screenshot_rgb(page, clip=None) -> np.ndarray:
    png = np.frombuffer(page.screenshot(clip), np.uint8)
    return cv2.imdecode(png, cv2.IMREAD_COLOR)[..., ::-1]


def legend_mm(pixels: np.ndarray) -> np.ndarray:
    """RGB pixels of the depth colour map → the relief (mm) of the nearest legend colour."""
    from firmware_app.panels import RELIEF_SCALE_MM, relief_colours

    mm = np.linspace(*RELIEF_SCALE_MM, 256)
    lut = relief_colours(mm).astype(np.float32)
    colours, back = np.unique(pixels.reshape(-1, 3), axis=0, return_inverse=True)  # few distinct colours
    d = ((colours.astype(np.float32)[:, None, :] - lut[None]) ** 2).sum(-1)
    return mm[d.argmin(1)][back.ravel()]


def depth_band_mm(page) -> tuple[float, int]:
    """(10th-90th percentile spread in mm, face pixels) of the depth panel as rendered on screen."""
    x0, y0, x1, y1 = rect(page, "depth")
    shot = screenshot_rgb(page, (x0 + 2, y0 + 2, x1 - 2, y1 - 2)).reshape(-1, 3)
    face = shot[shot.astype(int).sum(1) > 60]  # off the face the panel is black
    if len(face) < 100:
        return float("nan"), len(face)
    lo, hi = np.percentile(legend_mm(face), [10, 90])
    return float(hi - lo), len(face)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shots(docs: Path, work: Path) -> None:
    scenes = split_scenes(render_clip(work / "clip"), work / "scenes")
    with Chromium() as browser:
        for name in SCENES:
            port = _free_port()
            daemon = Daemon(daemon_config(scenes[name], work / f"state-{name}", port), port)
            try:
                page = browser.page(daemon.url(f"/live?token={TOKEN}"), 1280, 1000)
                decided = " && ['live','spoof','undecided'].includes(document.body.dataset.state)"
                page.wait_for(FACE_SHOWN + decided,
                              timeout=20)
                time.sleep(1.0)
                page.wait_for(FACE_SHOWN, timeout=5)
                band, _ = depth_band_mm(page)
                out = docs / f"console_{name}.jpg"
                cv2.imwrite(str(out), screenshot_rgb(page)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
                print(f"{out}: state {page.eval('document.body.dataset.state')}, depth band {band:.1f} mm")
            finally:
                daemon.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.console_live")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("shots", help="README screenshots of the live page (bona fide, print, tablet)")
    s.add_argument("--docs", type=Path, default=REPO / "docs")
    s.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "facedepth-console")
    c = sub.add_parser("cost", help="camera-loop frame rate with and without one browser on /live")
    c.add_argument("--seconds", type=float, default=10.0, help="per window; windows alternate A B A B")
    c.add_argument("--rounds", type=int, default=4, help="pairs of windows (without, with a browser)")
    c.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "facedepth-console")
    args = ap.parse_args(argv)
    if args.cmd == "shots":
        shots(args.docs, args.work)
        return 0
    from tests.console_cost import cost

    return cost(args.seconds, args.work, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
