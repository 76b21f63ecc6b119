"""Benchmark of the status port under load: idle connections, slowloris, and a burst of concurrent clients.

    python -m firmware_app.bench_http [--url http://127.0.0.1:8321 --token T] [--clients 200]
                                      [--idle 1000] [--slow 50] [--timeout 10]

Without --url it serves a stub daemon itself with the default `http:` limits (config.HttpConfig), so
the figures are the server's, not the pipeline's. Order: open the idle connections (rate), start the
slowloris clients (a header byte every 0.5 s), then fire `--clients` concurrent GET /healthz while
both are held; print answered / unanswered, p50 / p95 / max latency, and how long the server took to
close the idle and slowloris connections (its request deadline).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np


class _StubDaemon:
    last_result = None

    def healthy(self):
        return True

    def status(self):
        return {"frames": 0, "fps": 0.0, "camera": {"errors": 0}, "decisions": {}, "hooks": {}, "stages": {}}


def _one(url: str, headers: dict, timeout: float) -> tuple[int | None, float]:
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            r.read()
            return r.status, time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, time.monotonic() - t0
    except OSError:
        return None, time.monotonic() - t0


def _watch_closed(socks: list[socket.socket], t0: float, until: float, trickle: bool) -> list[float]:
    """Seconds after t0 at which the server closed each socket (trickling header bytes when asked)."""
    closed: dict[int, float] = {}
    head = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 1000
    for s in socks:
        s.setblocking(False)
    i = 0
    while time.monotonic() < until and len(closed) < len(socks):
        for k, s in enumerate(socks):
            if k in closed:
                continue
            try:
                if trickle:
                    s.send(head[i % len(head) : i % len(head) + 1])
                if s.recv(4096) == b"":
                    closed[k] = time.monotonic() - t0
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                closed[k] = time.monotonic() - t0
        i += 1
        time.sleep(0.5 if trickle else 0.05)
    return sorted(closed.values())


def run(url: str, token: str, clients: int, idle: int, slow: int, timeout: float) -> dict:
    host, port = urlsplit(url).hostname, urlsplit(url).port or 80
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    t0 = time.monotonic()
    idle_socks, refused = [], 0
    for _ in range(idle):
        try:
            idle_socks.append(socket.create_connection((host, port), timeout=5))
        except OSError:
            refused += 1
    idle_rate = len(idle_socks) / max(time.monotonic() - t0, 1e-6)
    slow_socks = [socket.create_connection((host, port), timeout=5) for _ in range(slow)]
    t_hold = time.monotonic()
    watch: dict[str, list[float]] = {}
    def closing(name, socks, trickle):
        watch[name] = _watch_closed(socks, t_hold, t_hold + 30, trickle)

    watchers = [threading.Thread(target=closing, args=("idle", idle_socks, False)),
                threading.Thread(target=closing, args=("slow", slow_socks, True))]
    for w in watchers:
        w.start()
    with ThreadPoolExecutor(clients) as pool:
        health = url.rstrip("/") + "/healthz"
        results = list(pool.map(lambda _: _one(health, headers, timeout), range(clients)))
    for w in watchers:
        w.join()
    for s in idle_socks + slow_socks:
        s.close()
    ok = [t for code, t in results if code == 200]
    lat = np.array(ok) * 1000 if ok else np.array([np.nan])
    return {
        "clients": clients,
        "answered_200": len(ok),
        "answered_other": sum(1 for code, _ in results if code not in (200, None)),
        "unanswered": sum(1 for code, _ in results if code is None),
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "max_ms": float(np.max(lat)),
        "idle_opened": len(idle_socks),
        "idle_refused": refused,
        "idle_open_rate_per_s": idle_rate,
        "idle_closed": len(watch.get("idle", [])),
        "idle_closed_after_s": max(watch.get("idle") or [float("nan")]),
        "slow": slow,
        "slow_closed": len(watch.get("slow", [])),
        "slow_closed_after_s": max(watch.get("slow") or [float("nan")]),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware_app.bench_http", description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="", help="a running daemon's base URL; default: a stub served here")
    ap.add_argument("--token", default="")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=10.0, help="per-request client timeout (s)")
    args = ap.parse_args(argv)
    server = None
    if not args.url:
        from firmware_app.config import HttpConfig
        from firmware_app.http_server import StatusServer

        cfg = HttpConfig(port=0)
        server = StatusServer.from_config(_StubDaemon(), cfg).start()
        args.url = f"http://127.0.0.1:{server.port}"
        print(f"stub daemon on {args.url}: workers {cfg.workers}, backlog {cfg.backlog}, "
              f"request_timeout_s {cfg.request_timeout_s}, max_connections {cfg.max_connections}")
    try:
        r = run(args.url, args.token, args.clients, args.idle, args.slow, args.timeout)
    finally:
        if server:
            server.close()
    print(f"idle connections: {r['idle_opened']} opened at {r['idle_open_rate_per_s']:.0f}/s "
          f"({r['idle_refused']} refused); server closed {r['idle_closed']}, the last after "
          f"{r['idle_closed_after_s']:.1f} s")
    print(f"slowloris: {r['slow_closed']} of {r['slow']} closed by the server, the last after "
          f"{r['slow_closed_after_s']:.1f} s")
    print(f"{r['clients']} concurrent GET /healthz while those were held: {r['answered_200']} answered 200, "
          f"{r['answered_other']} answered otherwise, {r['unanswered']} unanswered; "
          f"latency p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, max {r['max_ms']:.0f} ms")
    return 0 if r["unanswered"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
