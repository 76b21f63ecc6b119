"""predict --ply (face point cloud), profile --plot / --seconds (soak), and the HTTP live preview."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from firmware_app.config import Config, ConfigError, parse_config
from tests.test_fw_daemon import REPO, _config
from tests.test_fw_fixtures import DEV_PUB, DEV_PUB_FILE, synthetic_frames, tiny_bundle

FACE = "000_bona_fide.png"


def _run(*argv, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "firmware_app", *map(str, argv)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _read_ply(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "ply" and lines[1] == "format ascii 1.0"
    end = lines.index("end_header")
    header = lines[:end]
    n = int(next(ln for ln in header if ln.startswith("element vertex")).split()[-1])
    props = [ln.split()[-1] for ln in header if ln.startswith("property")]
    assert props == ["x", "y", "z", "red", "green", "blue"]
    rows = np.array([[float(v) for v in ln.split()] for ln in lines[end + 1 :]])
    return n, rows


def test_predict_writes_face_point_cloud(tmp_path):
    image = synthetic_frames() / FACE
    ply = tmp_path / "face.ply"
    proc = _run("predict", image, "--bundle", tiny_bundle(), "--trusted-key", DEV_PUB_FILE, "--out",
                tmp_path / "out", "--ply", ply)
    assert proc.returncode == 0, proc.stderr
    assert "face points" in proc.stdout
    # one image is evidence, never a live decision (the door decides along a track)
    assert "one frame is not a decision" in proc.stdout and "LIVE" not in proc.stdout
    n, rows = _read_ply(ply)
    npz = np.load(tmp_path / "out" / f"{image.stem}.npz")
    assert n == rows.shape[0] == int(npz["mask"].sum()) > 0  # exactly the face cells
    x, y, z = rows[:, 0], rows[:, 1], rows[:, 2]
    # distance from the face box: fx = 320 / tan(30°), Z0 = fx · 150 mm / box width; relief is ±20 mm
    fx = 320 / math.tan(math.radians(30))
    box = npz["face_box"]
    z0 = fx * 150 / (box[2] - box[0])
    assert 200 < z.min() and z.max() < 2000
    assert abs(np.median(z) - z0) < 30 and z.max() - z.min() < 100
    # the face box centre is left of and below the image centre: so is the cloud
    assert np.sign(np.median(x)) == np.sign((box[0] + box[2]) / 2 - 319.5)
    assert np.sign(np.median(y)) == np.sign((box[1] + box[3]) / 2 - 239.5)
    assert np.ptp(x) < 300 and np.ptp(y) < 300  # a face, not a room
    assert ((rows[:, 3:] >= 0) & (rows[:, 3:] <= 255)).all()


def test_predict_point_cloud_fov_scales_distance(tmp_path):
    image = synthetic_frames() / FACE

    def predict_ply(name, fov):
        return _run("predict", image, "--bundle", tiny_bundle(), "--trusted-key", DEV_PUB, "--out", tmp_path,
                    "--ply", tmp_path / name, "--fov-deg", fov)

    for fov in (60, 90):
        proc = predict_ply(f"{fov}.ply", fov)
        assert proc.returncode == 0, proc.stderr
    z60 = np.median(_read_ply(tmp_path / "60.ply")[1][:, 2])
    z90 = np.median(_read_ply(tmp_path / "90.ply")[1][:, 2])
    expected = math.tan(math.radians(30)) / math.tan(math.radians(45))  # fx90 / fx60
    assert abs(z90 / z60 - expected) < 0.05
    bad = predict_ply("x.ply", 0)
    assert bad.returncode == 2 and "field of view" in bad.stderr


def test_profile_plot_and_soak_by_seconds(tmp_path):
    camera = {"type": "replay", "source": str(synthetic_frames()), "loop": True}
    out, plot = tmp_path / "profile.json", tmp_path / "profile.png"
    proc = _run(
        "profile",
        "--config",
        _config(tmp_path, camera=camera),
        "--seconds",
        2.5,
        "--out",
        out,
        "--plot",
        plot,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert 2.3 < report["wall_s"] < 10 and report["frames"] > 0 and report["fps"] > 0
    assert report["rss_mb_start"] > 0 and report["rss_mb_end"] > 0
    assert report["rss_growth_percent"] is not None
    assert report["rss_mb_warm"] > 0 and report["rss_growth_after_warmup_percent"] is not None
    assert report["rss_warm_t_s"] < 2.5 and report["rss_slope_mb_per_h"] is None  # too short to tell
    assert "RSS" in proc.stdout and "%" in proc.stdout and "frames/s" in proc.stdout
    assert len(report["timeline"]) >= 1 and all(s["fps"] > 0 for s in report["timeline"])
    png = cv2.imread(str(plot))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100


def test_plot_without_matplotlib_is_a_note(tmp_path, monkeypatch):
    from firmware_app.profiling import plot_profile

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    report = {"frames": 1, "wall_s": 1.0, "fps": 1.0, "stages": {}, "timeline": []}
    assert plot_profile(report, tmp_path / "p.png") is False and not (tmp_path / "p.png").exists()


def test_firmware_does_not_import_matplotlib_at_start():
    code = "import sys, firmware_app.__main__, firmware_app.profiling; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize(
    "http, error",
    [
        ({"preview": True, "host": "0.0.0.0"}, "http.token: required for http.preview"),
        ({"preview": True, "enabled": False}, "http.preview: needs http.enabled"),
    ],
)
def test_preview_config_rules(http, error):
    text = "camera: {source: x}\nhttp: " + json.dumps(http) + "\n"
    with pytest.raises(ConfigError, match=error):
        parse_config(text, "c.yaml", env={})


def test_preview_token_from_env():
    text = "camera: {source: x}\nhttp: {preview: true, host: 0.0.0.0, token: '${PREVIEW_TOKEN}'}\n"
    cfg = parse_config(text, "c.yaml", env={"PREVIEW_TOKEN": "abc"})
    assert cfg.http.preview and cfg.http.token == "abc"
    assert not Config().http.preview  # off by default


class _PreviewDaemon:
    """The parts of Daemon the server uses, around one real pipeline result."""

    def __init__(self, result, threshold):
        from firmware_app.panels import preview_jpeg

        self.result, self.threshold, self._jpeg = result, threshold, preview_jpeg

    def preview_jpeg(self):
        return self._jpeg(self.result, self.threshold) if self.result else None

    def healthy(self):
        return True

    def status(self):
        return {}


@pytest.fixture(scope="module")
def frame_result():
    from firmware_app.bundle import load_bundle
    from firmware_app.camera import Frame
    from firmware_app.pipeline import Pipeline
    from firmware_app.profiling import Profiler

    pipeline = Pipeline.from_bundle(load_bundle(tiny_bundle()), Config(), Profiler())
    bgr = cv2.imread(str(synthetic_frames() / FACE))
    result = pipeline.process(Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic(), 0))
    assert result.face is not None
    return result, pipeline.liveness.scorer.threshold_mm


def _get(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_preview_needs_token_and_serves_a_jpeg(frame_result):
    from firmware_app.http_server import StatusServer

    server = StatusServer(_PreviewDaemon(*frame_result), "127.0.0.1", 0, token="s3cret", preview=True).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        for path in ("/preview", "/preview.jpg", "/preview.jpg?token=wrong"):
            assert _get(base + path)[0] == 401
        assert _get(base + "/preview.jpg", {"Authorization": "Bearer wrong"})[0] == 401
        code, ctype, page = _get(base + "/preview?token=s3cret")
        assert code == 200 and ctype.startswith("text/html") and b"/live.json" in page  # the live page
        for url, headers in (
            (base + "/preview.jpg?token=s3cret", None),
            (base + "/preview.jpg", {"Authorization": "Bearer s3cret"}),
        ):
            code, ctype, body = _get(url, headers)
            assert code == 200 and ctype == "image/jpeg"
            img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape[0] == 240 and img.shape[1] == 320 + 160 + 200
    finally:
        server.close()


def test_preview_off_and_before_first_frame(frame_result):
    from firmware_app.http_server import StatusServer

    off = StatusServer(_PreviewDaemon(*frame_result), "127.0.0.1", 0).start()
    empty = StatusServer(_PreviewDaemon(None, 4.0), "127.0.0.1", 0, preview=True).start()
    try:
        assert _get(f"http://127.0.0.1:{off.port}/preview.jpg")[0] == 404
        assert _get(f"http://127.0.0.1:{empty.port}/preview.jpg")[0] == 503
    finally:
        off.close()
        empty.close()


def test_soak_growth_is_measured_after_warm_up_and_a_leak_shows_as_a_slope():
    from firmware_app.profile_report import rss_slope_mb_per_h, warm_sample

    rng = np.random.default_rng(0)
    t = np.arange(1.0, 1801.0)
    settle = 140.0 + 13.0 * (1 - np.exp(-t / 5.0))  # the first seconds' growth is not a leak
    flat = [(x, 30.0, r) for x, r in zip(t, settle + rng.normal(0, 0.3, t.size), strict=True)]
    leak = [(x, 30.0, r + 10.0 * x / 3600.0) for x, _, r in flat]  # +10 MB an hour
    assert warm_sample(flat)[0] == 60.0 and warm_sample(flat[:100])[0] == 10.0  # a minute, or 10 % of a run
    assert warm_sample([(1.0, 30.0, None)]) is None
    assert abs(rss_slope_mb_per_h(flat, 60.0)) < 1.0
    assert abs(rss_slope_mb_per_h(leak, 60.0) - 10.0) < 1.0
    assert rss_slope_mb_per_h(flat[:400], 40.0) is None  # 180 s of second half: too short to tell
