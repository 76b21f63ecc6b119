"""Local HTTP status: /healthz (200 "ok" while frames flow, else 503), /status (JSON), /metrics (Prometheus).

With `http.preview: true` also /preview (an HTML page that reloads the image) and /preview.jpg (the
latest frame | depth colour map | decision, JPEG; 503 before the first frame).

Bound to 127.0.0.1 by default; when a token is set (the config requires one beyond loopback), every
request needs `Authorization: Bearer <token>` or `?token=<token>` (the preview page passes the query
form on to its image, since an <img> cannot send headers), else 401. Runs in a daemon thread.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

log = logging.getLogger(__name__)


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


PREVIEW_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>facedepth preview</title>
<style>body{{background:#111;color:#ccc;font-family:sans-serif}}img{{max-width:100%}}</style></head>
<body><img id="p" src="{src}" alt="waiting for the first frame">
<p>frame | depth colour map | decision &middot; refreshed every {ms} ms</p>
<script>
const img = document.getElementById("p");
setInterval(() => {{ img.src = "{src}" + "{sep}t=" + Date.now(); }}, {ms});
</script></body></html>
"""


class StatusServer:
    def __init__(
        self,
        daemon,
        host: str = "127.0.0.1",
        port: int = 8321,
        token: str = "",
        preview: bool = False,
        refresh_ms: int = 500,
    ):
        self.daemon, self.token, self.preview, self.refresh_ms = daemon, token, preview, refresh_ms
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                query_token = (parse_qs(url.query).get("token") or [""])[0]
                if server.token and not (
                    hmac.compare_digest(
                        self.headers.get("Authorization", "").encode(), f"Bearer {server.token}".encode()
                    )
                    or hmac.compare_digest(query_token.encode(), server.token.encode())
                ):
                    return self._send(401, "text/plain", b"token required\n")
                path = url.path
                if server.preview and path == "/preview":
                    src = "/preview.jpg" + (f"?token={quote(server.token)}" if server.token else "")
                    page = PREVIEW_HTML.format(
                        src=html.escape(src), sep="&" if server.token else "?", ms=server.refresh_ms
                    )
                    return self._send(200, "text/html; charset=utf-8", page.encode())
                if server.preview and path == "/preview.jpg":
                    try:
                        jpeg = server.daemon.preview_jpeg()
                    except Exception as e:  # never take the server down for a preview
                        log.warning("preview: %s", e)
                        jpeg = None
                    if jpeg is None:
                        return self._send(503, "text/plain", b"no frame yet\n")
                    return self._send(200, "image/jpeg", jpeg, cache=False)
                if path == "/healthz":
                    ok = server.daemon.healthy()
                    return self._send(200 if ok else 503, "text/plain", b"ok\n" if ok else b"no frames\n")
                if path == "/status":
                    return self._send(
                        200, "application/json", json.dumps(server.daemon.status(), indent=1).encode()
                    )
                if path == "/metrics":
                    return self._send(
                        200, "text/plain; version=0.0.4", prometheus(server.daemon.status()).encode()
                    )
                return self._send(404, "text/plain", b"not found: /healthz /status /metrics\n")

            def _send(self, code: int, ctype: str, body: bytes, cache: bool = True):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                if not cache:
                    self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
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
        self.httpd.server_close()
