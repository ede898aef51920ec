"""A local LLM endpoint that hangs, for the demo's fail-fast tests (a real socket on 127.0.0.1).

:func:`silent_endpoint` accepts TCP connections and never answers anything (a wedged server). An
endpoint that lists its models but never finishes a completion is ``server_fakes.FakeOpenAIServer``
in its ``timeout`` mode.
"""

from __future__ import annotations

import contextlib
import socket
import threading


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
