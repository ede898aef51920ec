"""Fixtures of the retriever tests."""

import shutil
import subprocess
import time

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors in the loss and estimator tests: one thread avoids oversubscribing a shared CPU (10x faster here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """`chroma run` on 127.0.0.1:FREEPORT over a temp dir; yields the port, kills the server after."""
    exe = shutil.which("chroma")
    if exe is None:
        pytest.skip("the `chroma` CLI (installed with the chromadb package) is not on PATH")
    import httpx

    from netutil import free_port, stop_process

    port = free_port()
    root = tmp_path_factory.mktemp("chroma-server")
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen([exe, "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma server exited with {proc.returncode}: {(root / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chroma server did not answer its heartbeat within 60 s")
            time.sleep(0.2)
        yield port
    finally:
        stop_process(proc, timeout_s=10)
        log.close()
