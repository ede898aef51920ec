"""End to end: the real demo server (subprocess on 127.0.0.1) driven by headless Debian chromium via Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
DATA = "synthetic:num_items=500,num_users=800,num_conversations=30"
REPO = Path(__file__).resolve().parents[3]


from netutil import free_port as _free_port  # noqa: E402
from netutil import stop_process  # noqa: E402


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); never `playwright install`")
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    pytest.importorskip("gradio", reason="gradio is not installed")
    port = _free_port()
    log = tmp_path_factory.mktemp("demo") / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, str(REPO / "demo.py"), "--data", DATA, "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"demo exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail(f"demo did not start within 240 s:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        stop_process(proc, timeout_s=20)


@pytest.fixture(scope="module")
def catalog_titles():
    from lumenrec.data.registry import load_dataset

    return {it.title for it in load_dataset(DATA).catalog}


def _send(page, text: str) -> None:
    box = page.locator("#lr-input textarea")
    box.fill(text)
    box.press("Enter")


def _wait_cards(page, previous: str = "", timeout: float = 60_000) -> str:
    """Wait until the cards panel shows cards different from `previous`; return its HTML."""
    page.wait_for_function(
        """prev => { const el = document.querySelector('#lr-cards .lr-cards');
                     return el && el.innerHTML !== prev && el.querySelectorAll('.lr-card').length > 0; }""",
        arg=previous, timeout=timeout)
    return page.locator("#lr-cards .lr-cards").inner_html()


@pytest.mark.timeout(420)
def test_demo_chat_critique_and_isolation(demo_url, catalog_titles, tmp_path):
    from playwright.sync_api import sync_playwright

    out = Path(os.environ.get("LUMENREC_TEST_OUTPUT", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            a = browser.new_context(viewport={"width": 1280, "height": 1000})
            b = browser.new_context(viewport={"width": 1280, "height": 1000})
            pa, pb = a.new_page(), b.new_page()
            remote: list[str] = []
            for p in (pa, pb):
                p.on("request", lambda r: remote.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
                p.goto(demo_url, wait_until="load")
                p.locator("#lr-input textarea").wait_for(timeout=60_000)
            # A: a request, then a critique
            _send(pa, "I need gel pens")
            first = _wait_cards(pa)
            titles = pa.locator("#lr-cards .lr-title").all_inner_texts()
            assert titles and all(t in catalog_titles for t in titles), titles
            whys = pa.locator("#lr-cards .lr-why").all_inner_texts()
            assert whys and all(len(w.split()) >= 5 for w in whys), whys
            bubble = pa.locator("#lr-chat").inner_text()
            assert "I need gel pens" in bubble and "Here are" in bubble
            _send(pa, "not BIC, under $10")
            second = _wait_cards(pa, first)
            titles2 = pa.locator("#lr-cards .lr-title").all_inner_texts()
            assert titles2 and all(t in catalog_titles for t in titles2)
            assert not any(t.lower().startswith("bic") for t in titles2), titles2
            pa.locator("#lr-side").get_by_text("not BIC").wait_for(timeout=30_000)
            # a chip sends its critique
            pa.locator("#lr-chip-1").click()
            _wait_cards(pa, second)
            pa.locator("#lr-chat").get_by_text("different brand").first.wait_for(timeout=30_000)
            pa.screenshot(path=str(out / "demo_a.png"), full_page=True)
            # B never saw A's conversation or constraints
            chat_b = pb.locator("#lr-chat").inner_text()
            assert "gel pens" not in chat_b
            assert "not BIC" not in pb.locator("#lr-side").inner_text()
            _send(pb, "I need a stapler")
            _wait_cards(pb)
            side_b = pb.locator("#lr-side").inner_text()
            assert "BIC" not in side_b, side_b
            assert "gel pens" not in pb.locator("#lr-chat").inner_text()
            pb.screenshot(path=str(out / "demo_b.png"), full_page=True)
            assert (out / "demo_a.png").stat().st_size > 10_000
            assert not remote, f"the page fetched remote resources (it must run offline): {remote[:5]}"
        finally:
            browser.close()
