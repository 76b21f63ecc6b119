"""A small HTTP/1.0 server for a status port: a long listen backlog, a deadline per request, bounded threads.

    accept ──► selector thread: reads each connection's request head without a thread,
               closes it when the head is not complete within `request_timeout_s` (slowloris, idle)
               or when more than `max_connections` wait (the oldest goes first)
           ──► queue (up to `max_connections` complete requests) ──► `workers` threads: parse, answer,
               close (a full queue, or a request that waited past its deadline, is answered 503 at once;
               each answer must be sent within `request_timeout_s`)

So idle or trickling clients cost a file descriptor each and no thread, and the number of threads is
fixed (`workers` + 1) whatever arrives. The handler is a `BaseHTTPRequestHandler` subclass; it reads
the head from memory and writes to the socket. One request per connection (HTTP/1.0, no keep-alive):
status clients poll, they do not stream.
"""

from __future__ import annotations

import io
import logging
import queue
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16384  # request line + headers; a GET needs far less
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\n\r\nbusy\n"
_TOO_BIG = b"HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n\r\nhead too large\n"


@dataclass(frozen=True)
class Limits:
    workers: int = 4  # threads answering requests
    backlog: int = 128  # kernel listen queue
    request_timeout_s: float = 5.0  # to send the request head, and to take the answer
    max_connections: int = 256  # connections waiting for their request head


@dataclass
class _Pending:
    sock: socket.socket
    addr: tuple
    deadline: float
    head: bytearray = field(default_factory=bytearray)


class _SocketWriter(io.RawIOBase):
    """wfile for the handler: every write is one sendall (bounded by the socket's timeout)."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._sock.sendall(b)
        return len(b)


class PreparsedHandlerMixin:
    """Put before BaseHTTPRequestHandler: `request` is (socket, head bytes) read by the selector thread."""

    def setup(self):
        self.connection, head = self.request
        self.rfile = io.BytesIO(head)
        self.wfile = _SocketWriter(self.connection)

    def finish(self):
        self.rfile.close()


class BoundedHTTPServer:
    def __init__(self, address: tuple[str, int], handler_cls, limits: Limits | None = None):
        limits = limits or Limits()
        self.handler_cls, self.limits = handler_cls, limits
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=limits.backlog)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._queue: queue.Queue = queue.Queue(maxsize=limits.max_connections)
        self._pending: dict[int, _Pending] = {}
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._workers = [
            threading.Thread(target=self._work, name=f"http-{i}", daemon=True) for i in range(limits.workers)
        ]
        self.closed_slow = 0  # connections closed for not sending their request in time
        self.answered_busy = 0  # requests answered 503 because every worker was busy

    # selector thread ---------------------------------------------------------------------------
    def serve_forever(self) -> None:
        for w in self._workers:
            w.start()
        sel = selectors.DefaultSelector()
        sel.register(self.socket, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    if key.data == "listen":
                        self._accept(sel)
                    elif key.data == "wake":
                        self._wake_r.recv(64)
                    else:
                        self._read(sel, key.data)
                self._expire(sel)
        finally:
            for p in list(self._pending.values()):
                self._drop(sel, p)
            sel.close()
            for _ in self._workers:
                self._queue.put(None)

    def _accept(self, sel) -> None:
        for _ in range(64):  # a burst at a time, so reads are not starved
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and the like: shed the oldest waiting connection
                log.warning("http: accept failed (%s)", e)
                self._shed(sel)
                return
            sock.setblocking(False)
            p = _Pending(sock, addr, time.monotonic() + self.limits.request_timeout_s)
            self._pending[sock.fileno()] = p
            sel.register(sock, selectors.EVENT_READ, p)
            if len(self._pending) > self.limits.max_connections:
                self._shed(sel)

    def _shed(self, sel) -> None:
        """Too many connections: the oldest waiting one is answered 503 (a fixed answer, not a reset)."""
        if self._pending:
            self.closed_slow += 1
            p = min(self._pending.values(), key=lambda p: p.deadline)
            self._unregister(sel, p)
            self._reply_close(p.sock, _BUSY)

    def _read(self, sel, p: _Pending) -> None:
        if p.sock.fileno() < 0:  # shed or expired earlier in this same select() batch
            return None
        try:
            data = p.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return self._drop(sel, p)
        p.head += data
        end = p.head.find(b"\r\n\r\n")
        if end < 0 and len(p.head) <= MAX_HEAD_BYTES:
            return None
        self._unregister(sel, p)
        if end < 0:
            return self._reply_close(p.sock, _TOO_BIG)
        try:
            self._queue.put_nowait((p.sock, p.addr, bytes(p.head[: end + 4]), p.deadline))
        except queue.Full:
            self.answered_busy += 1
            self._reply_close(p.sock, _BUSY)
        return None

    def _expire(self, sel) -> None:
        now = time.monotonic()
        for p in [p for p in self._pending.values() if p.deadline < now]:
            self.closed_slow += 1
            self._drop(sel, p)

    def _unregister(self, sel, p: _Pending) -> None:
        sel.unregister(p.sock)
        del self._pending[p.sock.fileno()]

    def _drop(self, sel, p: _Pending) -> None:
        self._unregister(sel, p)
        p.sock.close()

    @staticmethod
    def _reply_close(sock: socket.socket, data: bytes) -> None:
        try:
            sock.send(data)  # non-blocking, best effort: a short fixed answer fits the socket buffer
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):  # unread request bytes at close() make the kernel send RST, which
                pass  # can discard the answer before the client reads it: drain what has arrived
        except OSError:
            pass
        sock.close()

    # workers -----------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            sock, addr, head, deadline = item
            try:
                if time.monotonic() > deadline + self.limits.request_timeout_s:  # the client has given up
                    self.answered_busy += 1
                    sock.setblocking(False)
                    self._reply_close(sock, _BUSY)
                    continue
                sock.settimeout(self.limits.request_timeout_s)  # sendall's total time, since Python 3.5
                self.handler_cls((sock, head), addr, self)
            except Exception as e:  # a client that went away, a timeout, a handler bug: never the thread
                log.debug("http: %s: %s", addr, e)
            finally:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def shutdown(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def server_close(self) -> None:
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()
        for w in self._workers:
            if w.is_alive():
                w.join(1.0)
