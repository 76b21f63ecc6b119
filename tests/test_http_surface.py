"""The status port under load and abuse: backlog, request deadline (slowloris), idle connections, bounded
threads; and what a browser or a program gets: content negotiation, the 401 page, favicon, 404 list."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from firmware_app.http_server import StatusServer, wants_html
from firmware_app.httpd import Limits


class StubDaemon:
    """The parts of Daemon the server reads, with a realistic status."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.last_result = None

    def healthy(self):
        time.sleep(self.delay_s)
        return True

    def status(self):
        return {
            "frames": 10, "fps": 9.5, "camera": {"name": "replay", "open": True, "errors": 0},
            "decisions": {"live": 1, "spoof": 2}, "hooks": {"door": {"delivered": 3, "failures": 0}},
            "stages": {"detect": {"p95_ms": 3.0}}, "rss_mb": 100.0, "last_decision": None,
        }

    def preview_jpeg(self):
        return None


def _server(limits=None, token="", preview=False, daemon=None):
    daemon = daemon or StubDaemon()
    return StatusServer(daemon, "127.0.0.1", 0, token=token, preview=preview, limits=limits).start()


def _get(url, headers=None, timeout=5):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes `sock` (sending `trickle` a byte at a time), None if it stays open."""
    t0 = time.monotonic()
    sock.settimeout(0.1)
    i = 0
    while time.monotonic() - t0 < seconds:
        try:
            if trickle:
                sock.send(trickle[i % len(trickle) : i % len(trickle) + 1])
                i += 1
            if sock.recv(1024) == b"":
                return time.monotonic() - t0
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
    return None


def test_200_concurrent_requests_are_all_answered():
    server = _server()
    url = f"http://127.0.0.1:{server.port}/healthz"
    try:
        with ThreadPoolExecutor(200) as pool:
            codes = list(pool.map(lambda _: _get(url, timeout=10)[0], range(200)))
        assert codes.count(200) == 200, f"answered {codes.count(200)} of 200: {set(codes)}"
    finally:
        server.close()


def test_slowloris_and_idle_connections_are_closed_after_the_request_deadline():
    server = _server(Limits(request_timeout_s=0.5))
    try:
        slow = socket.create_connection(("127.0.0.1", server.port))
        idle = socket.create_connection(("127.0.0.1", server.port))
        # a byte every 0.1 s of a head that never ends: each read succeeds, the deadline still holds
        t = _closed_within(slow, 3.0, trickle=b"GET /healthz HTTP/1.1\r\nX-a: b\r\n")
        assert t is not None and 0.4 < t < 2.5, f"slowloris closed after {t}"
        t = _closed_within(idle, 3.0)
        assert t is not None and t < 2.5, f"idle connection closed after {t}"
        assert server.httpd.closed_slow >= 2
    finally:
        server.close()


def test_idle_connections_take_no_thread_and_do_not_block_real_clients():
    workers = 3
    before = threading.active_count()
    server = _server(Limits(workers=workers, max_connections=200, request_timeout_s=5.0))
    idle = []
    try:
        for _ in range(300):  # more than max_connections: the oldest are shed
            idle.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(0.3)
        t0 = time.monotonic()
        code, _, body = _get(f"http://127.0.0.1:{server.port}/healthz", timeout=3)
        assert code == 200 and body == b"ok\n" and time.monotonic() - t0 < 1.0
        assert threading.active_count() <= before + workers + 1  # the workers and the selector thread
        assert len(server.httpd._pending) <= 200 and server.httpd.closed_slow >= 100
    finally:
        for s in idle:
            s.close()
        server.close()


def test_a_full_queue_is_answered_busy_at_once_and_headers_are_bounded():
    server = _server(Limits(workers=1, max_connections=4), daemon=StubDaemon(delay_s=0.4))
    url = f"http://127.0.0.1:{server.port}/healthz"
    try:
        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(lambda _: _get(url, timeout=10)[0], range(12)))
        assert set(codes) == {200, 503} and codes.count(503) >= 3  # 1 worker + a queue of 4; none hang
        big = socket.create_connection(("127.0.0.1", server.port))
        big.sendall(b"GET /healthz HTTP/1.0\r\nX: " + b"a" * 20000)
        try:  # the server answers 431 and closes; the unread rest of the head may turn that into a reset
            answer = big.recv(100)
        except ConnectionResetError:
            answer = b"reset"
        assert answer.startswith(b"HTTP/1.0 431") or answer == b"reset"
        big.close()
        assert not server.httpd._pending  # nothing held for it
    finally:
        server.close()


def test_status_is_json_for_programs_and_a_page_for_browsers():
    server = _server(token="s3cret")
    base, auth = f"http://127.0.0.1:{server.port}", {"Authorization": "Bearer s3cret"}
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
    try:
        code, ctype, body = _get(base + "/status", auth)  # urllib sends no Accept: JSON
        assert code == 200 and ctype == "application/json" and json.loads(body)["fps"] == 9.5
        code, ctype, body = _get(base + "/status", {**auth, "Accept": "*/*"})
        assert ctype == "application/json"
        code, ctype, body = _get(base + "/status", {**auth, "Accept": browser})
        assert code == 200 and ctype.startswith("text/html") and b"<th>fps</th><td>9.5</td>" in body
        code, ctype, body = _get(base + "/status?token=s3cret", {"Accept": browser})
        assert b'href="/live?token=s3cret"' not in body  # no live page here: preview is off
        code, ctype, _ = _get(base + "/status?format=json&token=s3cret", {"Accept": browser})
        assert ctype == "application/json"
    finally:
        server.close()


def test_401_says_how_to_pass_the_token_and_the_favicon_needs_none():
    server = _server(token="s3cret", preview=True)
    base = f"http://127.0.0.1:{server.port}"
    try:
        code, ctype, body = _get(base + "/live", {"Accept": "text/html"})
        assert code == 401 and ctype.startswith("text/html")
        assert b"/live?token=" in body and b"Authorization: Bearer" in body and b"http.token" in body
        code, ctype, body = _get(base + "/status")
        assert code == 401 and b"?token=" in body and b"Bearer" in body
        with urllib.request.urlopen(urllib.request.Request(base + "/live?token=s3cret")) as r:
            csp = r.headers["Content-Security-Policy"]  # the page may load nothing from elsewhere
            assert "default-src 'none'" in csp and "img-src 'self'" in csp
            assert r.headers["Cache-Control"] == "no-store"
        code, ctype, body = _get(base + "/status?token=s3cret", {"Accept": "text/html"})
        assert b'href="/live?token=s3cret"' in body  # the token is carried on to the live page
        code, ctype, body = _get(base + "/favicon.ico")
        assert code == 200 and ctype == "image/png" and body.startswith(b"\x89PNG")
    finally:
        server.close()


@pytest.mark.parametrize("preview", [False, True])
def test_404_lists_the_pages(preview):
    server = _server(preview=preview)
    try:
        code, _, body = _get(f"http://127.0.0.1:{server.port}/nope")
        assert code == 404 and b"/healthz" in body and b"/status" in body and b"/metrics" in body
        assert (b"/live" in body) is preview
        code, ctype, body = _get(f"http://127.0.0.1:{server.port}/nope", {"Accept": "text/html"})
        assert code == 404 and ctype.startswith("text/html") and b'href="/status"' in body
    finally:
        server.close()


def test_accept_header_ranking():
    assert wants_html("text/html,application/xhtml+xml,*/*;q=0.8")
    assert not wants_html("*/*") and not wants_html("") and not wants_html("application/json")
    assert not wants_html("application/json, text/html;q=0.5")


def test_a_connection_shed_earlier_in_the_same_select_batch_does_not_kill_the_server():
    """_accept may shed a connection whose read event is already in the batch being handled: reading it
    afterwards must be a no-op, not unregister(-1) (which ended the selector thread: a dead status port)."""
    import selectors

    from firmware_app.httpd import _Pending

    server = _server(Limits(workers=1, max_connections=4))
    try:
        a, b = socket.socketpair()
        a.setblocking(False)
        p = _Pending(a, ("127.0.0.1", 0), time.monotonic() + 5)
        a.close()  # what _shed/_expire leave behind
        sel = selectors.DefaultSelector()
        assert server.httpd._read(sel, p) is None
        b.close()
        sel.close()
        assert _get(f"http://127.0.0.1:{server.port}/healthz")[0] in (200, 503)  # still serving
    finally:
        server.close()
