"""Network helpers shared by the integration tests (servers on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 60.0, proc=None) -> None:
    import httpx

    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@contextlib.contextmanager
def llm_server(timeout_s: float = 240.0, threads: int = 1, backend: str = "transformers", model: str | None = None):
    """`lumenrec llm serve` (by default the real local SmolLM2 on transformers) on a free 127.0.0.1 port;
    yields its base URL (``http://127.0.0.1:PORT``, no ``/v1``). A first run dequantizes the GGUF once,
    hence the timeout. `backend`/`model` pick another model (e.g. "llamacpp", "qwen2.5-coder-1.5b-instruct").
    Raises RuntimeError with the server's stderr tail if it exits or does not come up."""
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    extra = ["--backend", backend] + (["--model", model] if model else [])
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "lumenrec", "llm", "serve", "--host", "127.0.0.1",
                                 "--port", str(port), "--threads", str(threads), *extra],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_http(base + "/health", timeout_s=timeout_s, proc=proc)
            except (RuntimeError, TimeoutError) as e:
                err.seek(0)
                raise RuntimeError(f"`lumenrec llm serve` did not come up: {e}\n{err.read().decode()[-2000:]}") from e
            yield base
        finally:
            stop_process(proc, timeout_s=20)


def stop_process(proc: subprocess.Popen, timeout_s: float = 10) -> None:
    """Terminate a server started by a test; kill it if it has not exited within `timeout_s`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
