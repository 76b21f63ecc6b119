"""The live page in headless Debian chromium, against the daemon replaying the quick-start clip: the frame,
the registered depth overlay and the legend render, the page updates within 2 s, the track's decision
matches the outbox, a print's depth panel uses a narrow band of the legend while a face spans it, and a
phone-sized window needs no sideways scrolling."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.chromium import Chromium, chromium_path
from tests.console_live import (
    FACE_SHOWN,
    TOKEN,
    Daemon,
    _free_port,
    daemon_config,
    depth_band_mm,
    rect,
    render_clip,
    screenshot_rgb,
    split_scenes,
)
from tests.test_fw_fixtures import CACHE

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs chromium (apt-get install chromium)")
DECIDED = " && ['live','spoof','undecided'].includes(document.body.dataset.state)"


@pytest.fixture(scope="module")
def browser():
    with Chromium() as b:
        yield b


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    work = tmp_path_factory.mktemp("console")
    clip = render_clip(CACHE / "console-clip-v1")  # rendered once per checkout (~7 s), as other fixtures
    return split_scenes(clip, work / "scenes"), work


@pytest.fixture(scope="module")
def daemons(scenes):
    folders, work = scenes
    started: dict[str, Daemon] = {}

    def get(name: str) -> Daemon:
        if name not in started:
            port = _free_port()
            started[name] = Daemon(daemon_config(folders[name], work / f"state-{name}", port), port)
        return started[name]

    yield get
    for d in started.values():
        d.close()


def _open(browser, daemon, width=1280, height=860, mobile=False):
    return browser.page(daemon.url(f"/live?token={TOKEN}"), width, height, mobile=mobile)


def test_frame_overlay_and_legend_render_and_the_page_updates(browser, daemons):
    daemon = daemons("bona_fide")
    page = _open(browser, daemon)
    page.wait_for(FACE_SHOWN, timeout=15)
    # updates: new frames keep arriving, never 2 s apart
    n0 = page.eval("window.__live.updates.length")
    time.sleep(2.5)
    updates = page.eval("window.__live.updates")
    assert len(updates) >= n0 + 2 and max(np.diff(updates[-5:])) < 2000, updates[-6:]
    page.wait_for(FACE_SHOWN, timeout=5)
    shot = screenshot_rgb(page)
    # the frame: a camera image, large (more than half the window's width)
    fx0, fy0, fx1, fy1 = rect(page, "frame")
    assert fx1 - fx0 > 640 and shot[fy0:fy1, fx0:fx1].std() > 10
    # the overlay sits on the face box: the crop is 1.6× the face, centred on it
    ox0, oy0, ox1, oy1 = rect(page, "overlay")
    bx0, by0, bx1, by1 = rect(page, "box")
    assert bx0 < (ox0 + ox1) / 2 < bx1 and by0 < (oy0 + oy1) / 2 < by1
    assert 1.2 < (ox1 - ox0) / (bx1 - bx0) < 2.3
    # ... and colours the face: inside the box, far more saturated pixels with the overlay than without
    sat = lambda img: (img.max(-1).astype(int) - img.min(-1)).mean()  # noqa: E731
    with_overlay = sat(shot[by0:by1, bx0:bx1])
    page.eval("document.getElementById('ovl').click()")
    page.wait_for("getComputedStyle(document.getElementById('overlay')).display === 'none'", timeout=2)
    without = screenshot_rgb(page)[by0:by1, bx0:bx1]
    assert with_overlay > sat(without) + 20
    page.eval("document.getElementById('ovl').click()")
    # the legend: red (near) on top, blue (far) at the bottom
    lx0, ly0, lx1, ly1 = rect(page, "legend")
    bar = shot[ly0 + 3 : ly1 - 3, lx0 + 4 : lx0 + 16].astype(int)
    top, bottom = bar[:5].mean((0, 1)), bar[-5:].mean((0, 1))
    assert top[0] > top[2] + 60 and bottom[2] > bottom[0]
    assert "near" in page.eval("document.getElementById('legend').textContent")


def test_the_tracks_decision_matches_the_outbox(browser, daemons):
    for name in ("bona_fide", "print_flat"):
        daemon = daemons(name)
        page = _open(browser, daemon)
        page.wait_for("document.body.dataset.track" + DECIDED, timeout=20)
        track, state = int(page.eval("document.body.dataset.track")), page.eval("document.body.dataset.state")
        decided = [e for e in daemon.outbox_events() if e.get("track_id") == track]
        assert decided and decided[-1]["decision"] == state, (name, track, state, decided)
        # the decisions list shows it too, with its thumbnail
        try:
            page.wait_for(f"!!document.querySelector('#decisions li[data-track=\"{track}\"]')", timeout=3)
        except TimeoutError:
            raise AssertionError(page.eval("JSON.stringify([window.__live.errors, "
                                           "document.getElementById('decisions').innerHTML])")) from None
        row = f"document.querySelector('#decisions li[data-track=\"{track}\"]')"
        assert page.eval(row + ".dataset.decision") == state
        thumb = "document.querySelector('#decisions img')"
        page.wait_for(f"(i => i && i.complete && i.naturalWidth > 0)({thumb})", timeout=3)


def _band(browser, daemon, shots=5) -> float:
    page = _open(browser, daemon)
    bands = []
    for _ in range(shots):
        page.wait_for(FACE_SHOWN, timeout=15)
        band, pixels = depth_band_mm(page)
        if pixels >= 100:
            bands.append(band)
        time.sleep(0.3)
    assert bands, "no depth panel with a face"
    return float(np.median(bands))


def test_a_print_uses_a_narrow_band_of_the_legend_while_a_face_spans_it(browser, daemons):
    face = _band(browser, daemons("bona_fide"))
    printed = _band(browser, daemons("print_flat"))
    # the legend spans 100 mm; medians of 10 screenshots: face 39 mm, print 15, tablet 23 (p10-p90)
    assert face > 30 and face > 1.5 * printed, (face, printed)


def test_a_phone_sized_window_needs_no_sideways_scrolling(browser, daemons):
    page = _open(browser, daemons("bona_fide"), 390, 844, mobile=True)
    page.wait_for(FACE_SHOWN, timeout=15)
    assert page.eval("document.documentElement.scrollWidth <= window.innerWidth + 1")
    fx0, _, fx1, _ = rect(page, "frame")
    assert fx1 - fx0 > 340  # the frame takes the phone's width
    assert page.eval("parseFloat(getComputedStyle(document.getElementById('state')).fontSize)") >= 28
