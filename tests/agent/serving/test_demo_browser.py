"""End to end: the real demo (``demo.py --model DIR``, a subprocess on 127.0.0.1) driven by headless
Debian chromium via Playwright.

The system directory holds the 500-item synthetic store with Amazon-style blemishes added: HTML
entities in titles and descriptions (``&reg;``, ``&mdash;``) and half the Sharpie items with an empty
brand field (the title names the brand). Checked in the browser: cards (price, brand, placeholder,
each item once, no raw entity), every chip's effect on the next list, constraints in words and their
removal, Clear resetting the agent's constraints, Send/chips locked during a slow turn with a pending
status line and no empty bubble, the LLM switch failing fast against a local endpoint that hangs,
axe-core (WCAG 2.1 A/AA) with zero violations, a keyboard-reachable chat log, the layout at 390 px.
"""

from __future__ import annotations

import dataclasses
import html as htmllib
import os
import re
import shutil
import subprocess
import sys
import tempfile
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
RAW_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,8}|#\d{2,5});")
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

sys.path.insert(0, str(Path(__file__).parent))
from hung_llm import silent_endpoint  # noqa: E402
from netutil import free_port as _free_port  # noqa: E402
from netutil import stop_process  # noqa: E402
from server_fakes import FakeOpenAIServer  # noqa: E402


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def axe_js(tmp_path_factory) -> Path:
    """axe-core's axe.min.js: $AXE_CORE_JS, a cached npm install, else `npm install axe-core` now."""
    env = os.environ.get("AXE_CORE_JS")
    if env and Path(env).is_file():
        return Path(env)
    cache = Path(tempfile.gettempdir()) / "lumenrec-axe-core"
    js = cache / "node_modules" / "axe-core" / "axe.min.js"
    if js.is_file():
        return js
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: cannot fetch axe-core (or set AXE_CORE_JS=path/to/axe.min.js)")
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache), "axe-core@4"],
                       capture_output=True, text=True, timeout=180)
    if r.returncode != 0 or not js.is_file():
        pytest.skip(f"npm could not install axe-core (registry unreachable?): {r.stderr[-300:]}")
    return js


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """A `Recommender.from_pretrained` directory over the blemished store; returns (dir, catalog)."""
    from lumenrec.agent.recommender import write_manifest
    from lumenrec.data.registry import load_dataset
    from lumenrec.data.types import Catalog

    cat = load_dataset(DATA, with_conversations=False).catalog
    items, n_sharpie = [], 0
    for it in cat:
        it = dataclasses.replace(it, categories=list(it.categories), attributes=dict(it.attributes))
        if it.brand == "Sharpie":
            n_sharpie += 1
            if n_sharpie % 2:  # half of them: no brand field, a registered mark in the title
                it.brand = ""
                it.title = it.title.replace("Sharpie", "Sharpie&reg;", 1)
        if "Gel Pens" in it.categories:
            it.description = it.description + " Smooth &mdash; and quick-drying &amp; bold."
        items.append(it)
    d = tmp_path_factory.mktemp("demo_system")
    blemished = Catalog(items)
    write_manifest(d, dataset_name=DATA, catalog=blemished)
    return d, blemished


@pytest.fixture(scope="module")
def demo_url(system, tmp_path_factory):
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); never `playwright install`")
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    pytest.importorskip("gradio", reason="gradio is not installed")
    port = _free_port()
    log = tmp_path_factory.mktemp("demo") / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, str(REPO / "demo.py"), "--model", str(system[0]),
                                 "--host", "127.0.0.1", "--port", str(port)],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
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


# ------------------------------------------------------------------------------------------- helpers
def _open(browser, url: str, width: int, height: int, remote: list[str]):
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.on("request", lambda r: remote.append(r.url)
            if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
    page.goto(url, wait_until="load")
    page.locator("#lr-input textarea").wait_for(timeout=60_000)
    # the page-load event set the session (and pre-fills a hint): wait for it before typing
    page.wait_for_function("() => document.querySelector('#lr-cons-head') !== null")
    time.sleep(0.5)
    return page


def _send(page, text: str) -> None:
    box = page.locator("#lr-input textarea")
    box.fill(text)
    box.press("Enter")


def _cards_html(page) -> str:
    return page.evaluate("() => { const el = document.querySelector('#lr-cards .lr-cards'); return el ? el.innerHTML : ''; }")


def _wait_cards(page, previous: str = "", timeout: float = 60_000) -> list[dict]:
    """Wait until the cards differ from `previous` and the turn is over; return the cards' fields."""
    page.wait_for_function(
        """prev => { const el = document.querySelector('#lr-cards .lr-cards');
                     const send = document.querySelector('#lr-send');
                     return el && el.innerHTML !== prev && el.querySelectorAll('.lr-card').length > 0
                            && send && !send.disabled; }""",
        arg=previous, timeout=timeout)
    return _cards(page)


def _cards(page) -> list[dict]:
    return page.evaluate("""() => [...document.querySelectorAll('#lr-cards .lr-card')].map(c => ({
        id: c.dataset.itemId, title: c.querySelector('.lr-title').innerText,
        meta: c.querySelector('.lr-meta').innerText, price: c.querySelector('.lr-price').innerText,
        img: !!c.querySelector('svg.lr-img[role=img][aria-label]'),
        why: (c.querySelector('.lr-why') || {innerText: ''}).innerText}))""")


def _chips(page) -> list[str]:
    return page.evaluate("""() => [...document.querySelectorAll('#lr-chips button')]
        .filter(b => b.offsetParent !== null).map(b => b.innerText.trim())""")


def _constraints(page) -> list[str]:
    return page.evaluate("""() => [...document.querySelectorAll('#lr-cons button')]
        .filter(b => b.offsetParent !== null).map(b => b.innerText.replace(/\\s*\\u2715\\s*$/, '').trim())""")


def _bubbles(page) -> tuple[list[str], list[str]]:
    users = page.locator('#lr-chat [data-testid="user"]').all_inner_texts()
    bots = page.locator('#lr-chat [data-testid="bot"]').all_inner_texts()
    return users, bots


def _brand(card: dict) -> str:
    return card["meta"].split("\u00b7")[0].strip()


def _price(card: dict) -> float | None:
    m = re.match(r"\$([\d,]+\.\d\d)", card["price"])
    return float(m.group(1).replace(",", "")) if m else None


def _axe(page, axe_js: Path) -> list[dict]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is once CSS transitions have ended
    (a button fading back from its disabled look is measured at its final colours)."""
    page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')", timeout=10_000)
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_js))
    res = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5],
             "summary": v["nodes"][0].get("failureSummary", "")[:300]} for v in res["violations"]]


def _contrast(page, selector: str) -> float:
    """WCAG contrast ratio of an element's text colour on its background colour (computed styles)."""
    return page.evaluate("""sel => {
        const el = document.querySelector(sel), cs = getComputedStyle(el);
        const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
        const lum = ([r, g, b]) => { const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
                                     return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
        const a = lum(rgb(cs.color)), b = lum(rgb(cs.backgroundColor));
        return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); }""", selector)


# --------------------------------------------------------------------------------------------- tests
@pytest.mark.timeout(600)
def test_demo_in_the_browser(demo_url, system, axe_js, tmp_path):
    from playwright.sync_api import sync_playwright

    _, catalog = system
    clean_titles = {htmllib.unescape(it.title) for it in catalog}
    out = Path(os.environ.get("LUMENREC_TEST_OUTPUT", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    remote: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            pa = _open(browser, demo_url, 1280, 1000, remote)
            pb = _open(browser, demo_url, 1280, 1000, remote)

            # -- a request: cards with price, brand, placeholder; each item once; entities decoded --
            _send(pa, "I need gel pens")
            cards = _wait_cards(pa)
            assert cards and all(c["title"] in clean_titles for c in cards), cards
            assert all(c["img"] and _brand(c) and c["price"].startswith("$") for c in cards), cards
            assert cards[0]["why"] and len(cards[0]["why"].split()) >= 5
            users, bots = _bubbles(pa)
            assert users == ["I need gel pens"] and len(bots) == 1 and bots[0].strip()
            assert not any(c["title"] in bots[0] for c in cards), bots[0]  # the cards carry the items, once
            body = pa.evaluate("() => document.body.innerText")
            assert not RAW_ENTITY.search(body), RAW_ENTITY.findall(body)[:5]
            assert pa.evaluate("() => document.body.innerText.includes('\u00ae')") or \
                not any("&reg;" in it.title for it in catalog if it.id in {c["id"] for c in cards})

            # -- chips built from this list --
            chips = _chips(pa)
            brands = [_brand(c) for c in cards]
            brand_chips = [c for c in chips if c.startswith("not ") and c[4:] in brands]
            price_chips = [c for c in chips if c.startswith("under $")]
            colour_chips = [c for c in chips if c.startswith("not ") and c not in brand_chips]
            assert brand_chips and price_chips and colour_chips, chips

            # "not <brand>": that brand (also when named only in a title) leaves the next list
            before = _cards_html(pa)
            chip = brand_chips[0]
            pa.locator("#lr-chips button", has_text=chip).first.click()
            cards = _wait_cards(pa, before)
            assert chip[4:] not in [_brand(c) for c in cards], (chip, cards)
            assert chip in _constraints(pa)
            if chip == "not Sharpie":
                assert not any(c["title"].startswith("Sharpie") for c in cards)

            # "under $X": every price in the next list is at most X, the dearest shown is gone
            chips = _chips(pa)
            price_chip = next(c for c in chips if c.startswith("under $"))
            bound = float(price_chip.removeprefix("under $"))
            top = max(_price(c) for c in cards)
            before = _cards_html(pa)
            pa.locator("#lr-chips button", has_text=price_chip).first.click()
            cards = _wait_cards(pa, before)
            assert all(_price(c) <= bound for c in cards), (price_chip, [c["price"] for c in cards])
            assert max(_price(c) for c in cards) < top
            assert price_chip in _constraints(pa)

            # "not <colour>": the constraint is active in words, and no single-colour item of that colour is
            # shown (multi-colour items may stay)
            chips = _chips(pa)
            colour_chip = next((c for c in chips if c.startswith("not ") and c[4:] not in
                                {b.brand for b in catalog if b.brand} and not c.startswith("not $")), None)
            assert colour_chip, chips
            before = _cards_html(pa)
            pa.locator("#lr-chips button", has_text=colour_chip).first.click()
            cards = _wait_cards(pa, before)
            assert colour_chip in _constraints(pa)
            colour = colour_chip[4:]
            by_id = {it.id: it for it in catalog}
            assert any(it.attributes.get("colour") == colour for it in catalog)
            only = [c["id"] for c in cards if (by_id[c["id"]].attributes.get("colour") or "") == colour]
            assert not only, (colour_chip, only)

            # -- constraints in words, each removable --
            active = _constraints(pa)
            assert chip in active and price_chip in active
            pa.locator("#lr-cons button", has_text=chip).first.click()
            pa.wait_for_function("w => ![...document.querySelectorAll('#lr-cons button')].some("
                                 "b => b.offsetParent !== null && b.innerText.startsWith(w + ' '))", arg=chip,
                                 timeout=30_000)
            assert chip not in _constraints(pa) and price_chip in _constraints(pa)
            assert "Removed" in pa.locator("#lr-status").inner_text()

            # -- accessibility: axe-core (WCAG 2.1 A/AA), Send's contrast, the log by keyboard --
            violations = _axe(pa, axe_js)
            assert not violations, violations
            assert _contrast(pa, "#lr-send") >= 4.5
            pa.locator("body").click(position={"x": 5, "y": 5})
            reached = False
            for _ in range(60):
                pa.keyboard.press("Tab")
                if pa.evaluate("() => document.activeElement && document.activeElement.getAttribute('role') === 'log'"):
                    reached = True
                    break
            assert reached, "the chat log is not reachable with Tab"
            pa.screenshot(path=str(out / "demo_desktop.png"), full_page=True)

            # -- Clear resets the session: display and the agent's constraints --
            pa.locator('#lr-chat button[aria-label="Clear"]').click()
            pa.wait_for_function("() => document.querySelectorAll('#lr-chat [data-testid=\"user\"]').length === 0"
                                 " && document.querySelector('#lr-cons-head').innerText.includes('none')",
                                 timeout=30_000)
            assert _constraints(pa) == [] and _chips(pa) == []
            _send(pa, "I need gel pens")
            _wait_cards(pa, "")
            assert price_chip not in _constraints(pa) and colour_chip not in _constraints(pa), _constraints(pa)

            # -- B (another browser) never saw A's conversation or constraints --
            assert "gel pens" not in pb.locator("#lr-chat").inner_text()
            assert _constraints(pb) == []
            _send(pb, "I need a stapler")
            _wait_cards(pb)
            assert not any(c in _constraints(pb) for c in (chip, price_chip, colour_chip))
            assert "gel pens" not in pb.locator("#lr-chat").inner_text()

            # -- the LLM switch: validated on entry; a hung endpoint costs one timeout, not four --
            pa.get_by_text("Language model (optional)").click()
            url_box = pa.locator("#lr-base-url textarea, #lr-base-url input").first
            url_box.fill("localhost:8001")
            url_box.press("Enter")
            pa.locator("#lr-llm-status").get_by_text("Not a usable URL").wait_for(timeout=10_000)
            with silent_endpoint() as dead:
                url_box.fill(dead)
                url_box.press("Enter")
                pa.locator("#lr-llm-status").get_by_text("did not answer within").wait_for(timeout=15_000)
            with FakeOpenAIServer("timeout", delay_s=120) as fake:  # lists its models, never finishes a completion
                stuck = fake.base_url
                pa.locator("#lr-use-llm input").check()
                url_box.fill(stuck)
                url_box.press("Enter")
                pa.locator("#lr-llm-status").get_by_text("answers (fake").wait_for(timeout=15_000)
                n_users, n_bots = (len(x) for x in _bubbles(pa))
                before = _cards_html(pa)
                t0 = time.time()
                _send(pa, "I need binders")
                # locked while the turn runs; a pending status line counts the seconds
                pa.wait_for_function("() => document.querySelector('#lr-send').disabled", timeout=5_000)
                assert pa.locator("#lr-input textarea").is_disabled()
                assert all(pa.locator(f"#lr-chip-{i}").is_disabled() for i in range(len(_chips(pa))))
                pa.locator("#lr-status").get_by_text("Still working").wait_for(timeout=10_000)
                pa.locator("#lr-send").click(force=True)  # a second submit while the first runs
                pa.locator("#lr-input textarea").press("Enter")
                cards = _wait_cards(pa, before, timeout=90_000)
                took = time.time() - t0
                hits = fake.requests
                users, bots = _bubbles(pa)
                # Clear in the middle of a slow turn: the turn's updates stop, the controls come back
                _send(pa, "I need folders")
                pa.locator("#lr-status").get_by_text("Still working").wait_for(timeout=10_000)
                pa.locator('#lr-chat button[aria-label="Clear"]').click()
                pa.wait_for_function("() => !document.querySelector('#lr-send').disabled && document.querySelectorAll("
                                     "'#lr-chat [data-testid=\"user\"]').length === 0", timeout=10_000)
                time.sleep(2)
                assert _bubbles(pa) == ([], []) and not pa.locator("#lr-input textarea").is_disabled()
            assert len(users) == n_users + 1 and len(bots) == n_bots + 1, (users, bots)
            assert all(b.strip() for b in bots), bots  # never an empty bubble
            assert "fell back" in bots[-1] and stuck in bots[-1]
            assert cards
            # default settings: one 20 s router timeout, then the offline agent (the three narratives did not
            # wait theirs: that was 80 s)
            assert hits == 1, hits
            assert took < 45, took
            assert not pa.locator("#lr-send").is_disabled()
            pa.screenshot(path=str(out / "demo_llm_fallback.png"), full_page=True)

            # -- 390 px wide: no sideways page scroll, the input on the first screen, the panel near --
            pm = _open(browser, demo_url, 390, 844, remote)
            _send(pm, "I need gel pens")
            _wait_cards(pm)
            box = {s: pm.locator(s).first.bounding_box() for s in ("#lr-chat", "#lr-send", "#lr-cards", "#lr-side")}
            assert pm.evaluate("() => document.documentElement.scrollWidth") <= 390
            assert box["#lr-send"]["y"] + box["#lr-send"]["height"] <= 844 and box["#lr-send"]["x"] + box["#lr-send"]["width"] <= 390
            assert box["#lr-side"]["y"] < 1200, box  # it was ~2,000 px down
            strip = pm.evaluate("() => { const s = document.querySelector('#lr-cards .lr-cards');"
                                " return [s.scrollWidth, s.clientWidth]; }")
            assert strip[0] > strip[1]  # the cards scroll sideways inside their strip
            violations = _axe(pm, axe_js)
            assert not violations, violations
            pm.screenshot(path=str(out / "demo_390.png"), full_page=True)
            assert (out / "demo_desktop.png").stat().st_size > 10_000
            assert not remote, f"the page fetched remote resources (it must run offline): {remote[:5]}"
        finally:
            browser.close()
