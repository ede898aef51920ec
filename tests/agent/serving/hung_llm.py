"""Local LLM endpoints that hang, for the demo's fail-fast tests (real sockets on 127.0.0.1).

- :func:`silent_endpoint`: accepts TCP connections and never answers anything (a wedged server).
- :func:`slow_completions_endpoint`: answers ``GET /v1/models`` at once but holds every
  ``POST /v1/chat/completions`` open without a byte until the test ends (a model stuck mid-generation);
  it counts the completion requests it received.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def silent_endpoint():
    """Yield a base URL (``http://127.0.0.1:PORT/v1``) whose server accepts and then says nothing."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def loop():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)  # read nothing, answer nothing

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/v1"
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        srv.close()


class _Stats:
    def __init__(self) -> None:
        self.completions = 0
        self.models = 0
        self.lock = threading.Lock()
        self.release = threading.Event()


@contextlib.contextmanager
def slow_completions_endpoint():
    """Yield (base URL, stats): /v1/models answers, /v1/chat/completions hangs until the block ends."""
    stats = _Stats()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                with stats.lock:
                    stats.models += 1
                body = json.dumps({"object": "list", "data": [{"id": "stuck-model", "object": "model"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(n)
            if self.path.rstrip("/").endswith("/chat/completions"):
                with stats.lock:
                    stats.completions += 1
                stats.release.wait(120)  # hang: no status line, no body
                return
            self.send_error(404)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    srv = Server(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1", stats
    finally:
        stats.release.set()
        srv.shutdown()
        srv.server_close()
