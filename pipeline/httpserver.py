"""A loopback HTTP file server with Range support and scripted faults.

The demo serves its generated corpus with it, so that mining ingests URLs through yt-dlp and
img2dataset as a real run does; the tests script failures into it (404, 403, 429 with
Retry-After, 500, a stalled connection, a truncated body). Python's `http.server` alone has no
Range support, which ffmpeg and yt-dlp need to seek in an MP4.
"""

from __future__ import annotations

import email.utils
import mimetypes
import re
import sys
import threading
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (a timeout, a cancelled fetch) is normal here, not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass(frozen=True)
class Fault:
    """What the server does instead of serving a file, once per request that it is queued for.

    kind: "ok" (serve the file as usual), "status" (answer `status`, with Retry-After
    `retry_after` when set), "stall" (send the headers and then nothing for `seconds`), or
    "truncate" (promise the whole body, send `fraction` of it, close).
    """

    kind: str
    status: int = 0
    retry_after: float | None = None
    seconds: float = 0.0
    fraction: float = 0.5

    @classmethod
    def parse(cls, text: str) -> Fault:
        """`ok`, `404`, `429:2` (Retry-After 2 s), `stall:30`, `truncate:0.3`."""
        head, _, arg = text.partition(":")
        if head == "ok":
            return cls("ok")
        if head == "stall":
            return cls("stall", seconds=float(arg or 60))
        if head == "truncate":
            return cls("truncate", fraction=float(arg or 0.5))
        return cls("status", status=int(head), retry_after=float(arg) if arg else None)


class FileServer:
    """Serve a folder on 127.0.0.1 in a background thread; `with FileServer(root) as s: s.url(p)`.

    `fail(path, *faults)` queues faults for a path: each request takes the next one, and once
    the queue is empty the file is served (a host that recovers). `always(path, fault)` keeps
    failing. `latency_s` delays every answer, as a distant host would. `requests[path]` counts
    the requests that reached each path, and `served[path]` those answered with file bytes.
    """

    def __init__(
        self, root: str | Path, host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0
    ) -> None:
        self.root = Path(root).resolve()
        self.latency_s = latency_s
        self.requests: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self._queued: dict[str, deque[Fault]] = defaultdict(deque)
        self._always: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = _QuietServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, relative: str | Path) -> str:
        return f"{self.base_url}/{Path(relative).as_posix().lstrip('/')}"

    def fail(self, path: str, *faults: Fault | str) -> None:
        with self._lock:
            self._queued["/" + path.lstrip("/")].extend(
                f if isinstance(f, Fault) else Fault.parse(f) for f in faults
            )

    def always(self, path: str, fault: Fault | str) -> None:
        with self._lock:
            self._always["/" + path.lstrip("/")] = (
                fault if isinstance(fault, Fault) else Fault.parse(fault)
            )

    def heal(self) -> None:
        """Drop every queued and permanent fault."""
        with self._lock:
            self._queued.clear()
            self._always.clear()

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            self.requests[path] += 1
            if self._queued.get(path):
                return self._queued[path].popleft()
            return self._always.get(path)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet: tests and the demo read counters
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                if server.latency_s:
                    server._stop.wait(server.latency_s)
                fault = server._next_fault(path)
                if fault is not None and fault.kind == "status":
                    self._status(fault)
                    return
                file = (server.root / path.lstrip("/")).resolve()
                if server.root not in file.parents or not file.is_file():
                    self._status(Fault("status", status=404))
                    return
                size = file.stat().st_size
                start, end = 0, size - 1
                ranged = self.headers.get("Range")
                if ranged:
                    match = _RANGE.match(ranged.strip())
                    if not match or (not match[1] and not match[2]):
                        self._status(Fault("status", status=416), size)
                        return
                    if match[1]:
                        start = int(match[1])
                        end = min(int(match[2]), size - 1) if match[2] else size - 1
                    else:  # a suffix: the last N bytes
                        start = max(0, size - int(match[2]))
                    if start >= size or start > end:
                        self._status(Fault("status", status=416), size)
                        return
                length = end - start + 1
                self.send_response(HTTPStatus.PARTIAL_CONTENT if ranged else HTTPStatus.OK)
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header(
                    "Last-Modified", email.utils.formatdate(file.stat().st_mtime, usegmt=True)
                )
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if not body:
                    return
                if fault is not None and fault.kind == "stall":
                    server._stop.wait(fault.seconds)
                    self.close_connection = True
                    return
                if fault is not None and fault.kind == "truncate":
                    length = int(length * fault.fraction)
                    self.close_connection = True
                with server._lock:
                    server.served[path] += 1
                self._send_file(file, start, length)

            def _send_file(self, file: Path, start: int, length: int) -> None:
                with open(file, "rb") as fh:
                    fh.seek(start)
                    while length > 0 and not server._stop.is_set():
                        chunk = fh.read(min(_CHUNK, length))
                        if not chunk:
                            break
                        try:
                            self.wfile.write(chunk)
                        except (BrokenPipeError, ConnectionResetError):
                            return
                        length -= len(chunk)

            def _status(self, fault: Fault, size: int | None = None) -> None:
                payload = f"{fault.status} {HTTPStatus(fault.status).phrase}\n".encode()
                self.send_response(fault.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                if fault.retry_after is not None:
                    self.send_header("Retry-After", str(int(round(fault.retry_after))))
                if fault.status == 416 and size is not None:
                    self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

        return Handler
