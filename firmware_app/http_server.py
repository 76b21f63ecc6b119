"""Local HTTP status and operator console.

    /healthz       200 "ok" while frames flow, else 503 (what a supervisor or deploy's health check asks)
    /status        JSON for programs; a readable page for a browser (Accept: text/html); ?format=json
    /metrics       Prometheus text
    /favicon.ico   served without a token (browsers ask for it on every page)
  with `http.preview: true`, the live page (console.py, console_page.py):
    /live          the camera frame large, face box + depth overlay, the track's decision state and its
                   evidence over time, the last decisions with thumbnails, health at a glance (alias /preview)
    /live.json     what the page polls; /live/frame.jpg?f=ID, /live/depth.png?f=ID, /live/thumb/EVENT.png
    /preview.jpg   the latest frame | depth colour map | decision as one JPEG (503 before the first frame)

Bound to 127.0.0.1 by default; when a token is set (the config requires one beyond loopback), every
request but the favicon needs `Authorization: Bearer <token>` or `?token=<token>`, else 401 with a page
that says how to pass it. Served by httpd.BoundedHTTPServer: long backlog, request deadline, fixed threads.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from firmware_app import console_page as pages
from firmware_app.httpd import BoundedHTTPServer, Limits, PreparsedHandlerMixin

log = logging.getLogger(__name__)

HTML, JSON, TEXT = "text/html; charset=utf-8", "application/json", "text/plain; charset=utf-8"
# the pages' own inline script and style, images and fetches from this daemon, nothing else
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_THUMB = re.compile(r"/live/thumb/([0-9a-f]{8,64})\.png")


def prometheus(status: dict) -> str:
    lines = [
        "# TYPE facedepth_frames_total counter",
        f"facedepth_frames_total {status['frames']}",
        "# TYPE facedepth_fps gauge",
        f"facedepth_fps {status['fps']}",
        "# TYPE facedepth_camera_errors_total counter",
        f"facedepth_camera_errors_total {status['camera']['errors']}",
        "# TYPE facedepth_decisions_total counter",
    ]
    lines += [f'facedepth_decisions_total{{decision="{k}"}} {v}' for k, v in status["decisions"].items()]
    lines.append("# TYPE facedepth_hook_delivered_total counter")
    lines += [
        f'facedepth_hook_delivered_total{{hook="{k}"}} {v["delivered"]}' for k, v in status["hooks"].items()
    ]
    lines.append("# TYPE facedepth_hook_failures_total counter")
    lines += [
        f'facedepth_hook_failures_total{{hook="{k}"}} {v["failures"]}' for k, v in status["hooks"].items()
    ]
    lines.append("# TYPE facedepth_stage_p95_seconds gauge")
    for name, s in status["stages"].items():
        if s["p95_ms"] is not None:
            lines.append(f'facedepth_stage_p95_seconds{{stage="{name}"}} {s["p95_ms"] / 1000:.6f}')
    if status.get("rss_mb") is not None:
        lines += ["# TYPE facedepth_rss_bytes gauge", f"facedepth_rss_bytes {int(status['rss_mb'] * 2**20)}"]
    return "\n".join(lines) + "\n"


def wants_html(accept: str) -> bool:
    """True when the client ranks text/html above JSON (a browser); curl's */* and programs get JSON."""
    best: dict[str, float] = {}
    for part in accept.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        best[kind.lower()] = max(q, best.get(kind.lower(), 0.0))
    return best.get("text/html", 0.0) > max(best.get("application/json", 0.0), best.get("*/*", 0.0) * 0.99)


class StatusServer:
    def __init__(
        self,
        daemon,
        host: str = "127.0.0.1",
        port: int = 8321,
        token: str = "",
        preview: bool = False,
        refresh_ms: int = 500,
        limits: Limits | None = None,
    ):
        from firmware_app.console import LiveView

        self.daemon, self.token, self.preview, self.refresh_ms = daemon, token, preview, refresh_ms
        self.live = LiveView(daemon) if preview else None
        self.httpd = BoundedHTTPServer((host, port), self._handler(), limits or Limits())
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @classmethod
    def from_config(cls, daemon, http) -> StatusServer:
        """From the config's `http:` section (config.HttpConfig)."""
        limits = Limits(http.workers, http.backlog, http.request_timeout_s, http.max_connections)
        return cls(daemon, http.host, http.port, http.token, http.preview, http.refresh_ms, limits)

    def pages(self) -> dict[str, str]:
        out = {"/healthz": "200 while frames flow", "/status": "status (HTML for a browser, else JSON)",
               "/metrics": "Prometheus"}
        if self.preview:
            out = {"/live": "the live page", **out, "/preview.jpg": "frame | depth | decision as one JPEG"}
        return out

    def authorised(self, headers, query: dict) -> bool:
        if not self.token:
            return True
        bearer = headers.get("Authorization", "").encode()
        given = (query.get("token") or [""])[0].encode()
        return hmac.compare_digest(bearer, f"Bearer {self.token}".encode()) or hmac.compare_digest(
            given, self.token.encode()
        )

    def route(self, path: str, query: dict, accept: str) -> tuple[int, str, bytes]:
        """(status, content type, body) of an authorised GET."""
        if path == "/healthz":
            ok = self.daemon.healthy()
            return (200, TEXT, b"ok\n") if ok else (503, TEXT, b"no frames\n")
        if path == "/status":
            status = self.daemon.status()
            if (query.get("format") or [""])[0] != "json" and wants_html(accept):
                token = (query.get("token") or [""])[0] if self.token else ""
                return 200, HTML, pages.status_page(status, self.preview, token).encode()
            return 200, JSON, json.dumps(status, indent=1).encode()
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", prometheus(self.daemon.status()).encode()
        if path == "/" and self.preview:
            return 302, "", b"/live"
        if self.preview:
            found = self._live(path, query)
            if found is not None:
                return found
        if wants_html(accept):
            return 404, HTML, pages.not_found_page(self.pages()).encode()
        return 404, TEXT, ("not found; pages: " + " ".join(self.pages()) + "\n").encode()

    def _live(self, path: str, query: dict) -> tuple[int, str, bytes] | None:
        if path in ("/live", "/preview"):
            return 200, HTML, pages.live_page(self.refresh_ms).encode()
        if path == "/live.json":
            return 200, JSON, json.dumps(self.live.snapshot(), separators=(",", ":")).encode()
        if path in ("/live/frame.jpg", "/live/depth.png"):
            f = (query.get("f") or [""])[0]
            fid = int(f) if f.isdigit() else None
            img = self.live.frame_jpeg(fid) if path.endswith(".jpg") else self.live.depth_png(fid)
            if img is None:
                return 404, TEXT, b"that frame is no longer held (or has no face); poll /live.json again\n"
            return 200, "image/jpeg" if path.endswith(".jpg") else "image/png", img
        if m := _THUMB.fullmatch(path):
            png = self.live.thumbnail(m.group(1))
            return (200, "image/png", png) if png else (404, TEXT, b"no thumbnail for that decision\n")
        if path == "/preview.jpg":
            try:
                jpeg = self.daemon.preview_jpeg()
            except Exception as e:  # never take the server down for a preview
                log.warning("preview: %s", e)
                jpeg = None
            return (200, "image/jpeg", jpeg) if jpeg else (503, TEXT, b"no frame yet\n")
        return None

    def _handler(self):
        server = self

        class Handler(PreparsedHandlerMixin, BaseHTTPRequestHandler):
            server_version = "facedepth"

            def do_GET(self, head_only: bool = False):  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                accept = self.headers.get("Accept", "")
                if url.path == "/favicon.ico":
                    return self._send(200, "image/png", pages.favicon_png(), head_only, cache=True)
                if not server.authorised(self.headers, query):
                    if wants_html(accept):
                        body = pages.unauthorized_page(url.path).encode()
                        return self._send(401, HTML, body, head_only)
                    return self._send(401, TEXT, pages.UNAUTHORIZED_TEXT.encode(), head_only)
                try:
                    code, ctype, body = server.route(url.path, query, accept)
                    cache = code == 200 and _THUMB.fullmatch(url.path) is not None  # fixed per decision
                except Exception as e:  # a broken status field must not kill the worker or hang the client
                    log.warning("http %s: %s", url.path, e)
                    code, ctype, body, cache = 500, TEXT, f"internal error: {e}\n".encode(), False
                if code == 302:
                    keep = f"?{url.query}" if url.query else ""
                    self.send_response(302)
                    self.send_header("Location", body.decode() + keep)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self._send(code, ctype, body, head_only, cache)

            def do_HEAD(self):  # noqa: N802
                return self.do_GET(head_only=True)

            def _send(self, code: int, ctype: str, body: bytes, head_only: bool = False, cache: bool = False):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                if code == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="facedepth"')
                self.send_header("Cache-Control", "private, max-age=86400" if cache else "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Referrer-Policy", "no-referrer")  # the token may be in the URL
                if ctype == HTML:
                    self.send_header("X-Frame-Options", "DENY")
                    self.send_header("Content-Security-Policy", _CSP)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head_only:
                    self.wfile.write(body)

            def log_message(self, fmt, *args):
                log.debug("http: " + fmt, *args)

        return Handler

    def start(self) -> StatusServer:
        self._thread.start()
        log.info("status on http://%s:%d/status", *self.httpd.server_address[:2])
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self.httpd.server_close()
