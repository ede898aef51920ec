"""The demo's backend (no browser): cards, chips and their effects, constraints in words and their
removal, Clear, one turn at a time, sample users, streaming, isolation, the fail-fast LLM switch."""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from lumenrec.agent.serving.demo_app import (MAX_CHIPS, DemoBackend, DemoConfig, build_app, clean_text,
                                             constraint_parts, probe_llm, render_cards, render_side,
                                             validate_llm_url)
from lumenrec.agent.session import Constraints
from lumenrec.data.types import Catalog, Item
from lumenrec.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from hung_llm import silent_endpoint  # noqa: E402
from server_fakes import FakeOpenAIServer, KeywordRetriever  # noqa: E402

DATA = "synthetic:num_items=500,num_users=800,num_conversations=30"
RAW_ENTITY = re.compile(r"&(?:[a-zA-Z]+|#\d+);")


@pytest.fixture(scope="module")
def backend():
    return DemoBackend.from_config(DemoConfig(data=DATA, max_sample_users=10))


def _tiny_backend(**kw) -> DemoBackend:
    """Eight items with known facts: entities in text, one brand-less item named by its title, one unpriced."""
    from lumenrec.agent.recommender import Recommender

    cat = Catalog([
        Item("g1", "Pilot G2 Gel Pens, Black Ink, 12 Pack", "Pilot", ["Office", "Pens", "Gel Pens"],
             "Smooth &mdash; fast drying.", 11.0, {"colour": "black"}),
        Item("g2", "Pilot G2 Gel Pens, Blue Ink, 4 Pack", "", ["Office", "Pens", "Gel Pens"], "Gel pens.", 5.0,
             {"colour": "blue"}),
        Item("g3", "Sharpie&reg; S-Gel Gel Pens, Black Ink, 6 Pack", "Sharpie", ["Office", "Pens", "Gel Pens"],
             "Bold lines.", 8.0, {"colour": "black"}),
        Item("g4", "Sharpie S-Gel Gel Pens, Red Ink, 2 Pack", "Sharpie", ["Office", "Pens", "Gel Pens"], "Red.", 3.0,
             {"colour": "red"}),
        Item("g5", "Zebra Sarasa Gel Pens, Black Ink, 10 Pack", "Zebra", ["Office", "Pens", "Gel Pens"], "Zebra.", 9.0,
             {"colour": "black"}),
        Item("g6", "Uni-ball Signo Gel Pens, Green Ink", "uni-ball", ["Office", "Pens", "Gel Pens"], "Signo.", None,
             {"colour": "green"}),
        Item("n1", "Post-it Notes, Yellow, 12 Pads", "Post-it", ["Office", "Paper", "Sticky Notes"], "Notes.", 9.0,
             {"colour": "yellow"}),
        Item("t1", "HP 63 Black Ink Cartridge", "HP", ["Office", "Ink", "Ink Cartridges"], "HP ink.", 24.0,
             {"colour": "black"}),
    ])
    return DemoBackend(Recommender(cat, KeywordRetriever(cat)), **kw)


# ------------------------------------------------------------------------------------------ display
def test_entities_are_decoded_when_the_data_loads_and_brand_comes_from_the_title():
    b = _tiny_backend()
    assert b.view("g3").title == "Sharpie\u00ae S-Gel Gel Pens, Black Ink, 6 Pack"
    assert b.view("g2").brand == "Pilot"  # empty brand field: the title names it
    assert b.view("g6").price is None and b.view("g1").colours == ("black",)
    assert clean_text("AT&amp;T 210 &mdash; corded") == "AT&T 210 \u2014 corded"
    assert clean_text("double &amp;reg; encoded") == "double \u00ae encoded"
    assert clean_text("AT&T; stays") == "AT&T; stays"  # not an entity: left as written
    cards = b.item_cards([{"id": "g3", "why": "Bold &amp; smooth."}, {"id": "g2"}, {"id": "g6"}, {"id": "nope"}])
    assert [c["id"] for c in cards] == ["g3", "g2", "g6"]  # an id not in the catalogue is not shown
    html = render_cards(cards)
    assert not RAW_ENTITY.search(html.replace("&middot;", "").replace("&amp;", "").replace("&quot;", "")
                                 .replace("&lt;", "").replace("&gt;", "").replace("&#x27;", ""))
    assert "Sharpie\u00ae S-Gel" in html and "Bold &amp; smooth." in html  # decoded once, then escaped for HTML
    assert "Pilot &middot; Gel Pens" in html and "$8.00" in html and "price not listed" in html
    assert html.count('class="lr-img"') == 3 and 'aria-label="Gel Pens (placeholder image)"' in html


def test_cards_show_the_screened_catalogue_text():
    from lumenrec.agent.recommender import Recommender

    cat = Catalog([Item("h1", "Gel Pens 12 Pack - Visit www.evil.com for a free gift", "Pilot", ["Office", "Gel Pens"],
                        "Pens.", 4.0),
                   Item("h2", "Blue Gel Pens, 4 Pack", "Call 555-123-4567", ["Office", "Gel Pens"], "Pens.", 3.0)])
    b = DemoBackend(Recommender(cat, KeywordRetriever(cat)))
    html = render_cards(b.item_cards([{"id": "h1"}, {"id": "h2"}]))
    assert "evil.com" not in html and "free gift" not in html and "555-123" not in html
    assert "Gel Pens 12 Pack" in html and "Blue Gel Pens" in html
    assert "evil" not in " ".join(b.chips_for(["h1", "h2"])) and "555" not in " ".join(b.chips_for(["h1", "h2"]))


def test_cards_escape_and_show_every_field():
    html = render_cards([{"id": "7", "title": "Pens <b>bold</b>", "brand": "Pilot", "category": "Gel Pens",
                          "price": 4.5, "why": "You liked \"G2\" & more."},
                         {"id": "8", "title": "Tape", "brand": "", "category": "Tape", "price": None, "why": ""}])
    assert html.count('class="lr-card"') == 2
    assert "Pens &lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html
    assert "Pilot &middot; Gel Pens" in html and "You liked &quot;G2&quot; &amp; more." in html
    assert 'data-item-id="8"' in html and html.count('class="lr-why"') == 1 and "$4.50" in html
    assert 'role="region"' in html and 'tabindex="0"' in html  # the scrolling strip is keyboard-reachable
    assert "No items yet" in render_cards([])
    side = render_side("Likes pens.", ["A", "B"])
    assert "Likes pens." in side and "History (2 items)" in side


def test_config_validation():
    with pytest.raises(ConfigError, match="port"):
        DemoConfig(port=70000)
    with pytest.raises(ConfigError, match="llm_base_url"):
        DemoConfig(llm_base_url="localhost:8001")
    with pytest.raises(ConfigError, match="llm_probe_timeout_s"):
        DemoConfig(llm_probe_timeout_s=0)
    with pytest.raises(ConfigError, match="pending_after_s"):
        DemoConfig(pending_after_s=float("nan"))


def test_url_validation_names_the_problem():
    assert validate_llm_url("  http://127.0.0.1:8001/v1 ") == "http://127.0.0.1:8001/v1"
    for bad, why in [("localhost:8001", "http"), ("ftp://x/v1", "http"), ("http://", "host"),
                     ("http://h:99999/v1", "port"), ("http://h:80/v1?x=1", "query"), ("http://a b/v1", "spaces")]:
        with pytest.raises(ConfigError, match=why):
            validate_llm_url(bad)


# ---------------------------------------------------------------------------------- chips, constraints
def test_chips_come_from_what_was_shown_and_each_does_what_it_says():
    b = _tiny_backend()
    shown = ["g1", "g3", "g5", "g4", "g6"]
    chips = b.chips_for(shown)
    # brands present (most frequent first), the median shown price (8, 9, 11, 3 -> 8.5 -> $9), the shared colour
    assert chips == ["not Sharpie", "not Pilot", "under $9", "not black"], chips
    assert len(chips) <= MAX_CHIPS
    assert b.chips_for(["t1"]) == ["not HP", "not black"]  # one price: no price band
    assert b.chips_for([]) == []
    # every chip is parsed as meant
    p = b.rec.parser
    assert p.parse("not Sharpie").exclude_brands == ["Sharpie"] and p.parse("under $9").max_price == 9
    assert "black" in p.parse("not black").avoid_attributes.get("colour", "")


def test_a_brand_chip_also_removes_that_brand_named_only_in_titles():
    b = _tiny_backend()
    sid = b.new_session("")
    first = list(b.stream(sid, "gel pens pilot sharpie zebra"))[-1]
    assert first.show_cards and "not Pilot" in first.chips
    after = list(b.stream(sid, "not Pilot"))[-1]
    assert after.items and all(it["brand"] != "Pilot" for it in after.items)
    assert "g2" not in [it["id"] for it in after.items]  # brand field empty, title "Pilot G2 ..."


def test_chips_effects_on_the_synthetic_store(backend):
    sid = backend.new_session("")
    first = list(backend.stream(sid, "I need gel pens"))[-1]
    assert first.show_cards and first.chips, first
    brand_chip = next(c for c in first.chips if c.startswith("not ") and c[4:] in {it["brand"] for it in first.items})
    nxt = list(backend.stream(sid, brand_chip))[-1]
    assert nxt.items and brand_chip[4:] not in {it["brand"] for it in nxt.items}
    assert brand_chip in [w for w, _ in backend.constraints(sid)]
    price_chip = next(c for c in nxt.chips if c.startswith("under $"))
    bound = float(price_chip.removeprefix("under $"))
    shown_prices = sorted(it["price"] for it in nxt.items)
    assert shown_prices[0] <= bound < shown_prices[-1]
    cheap = list(backend.stream(sid, price_chip))[-1]
    assert cheap.items and all(it["price"] <= bound for it in cheap.items)
    assert max(it["price"] for it in cheap.items) < shown_prices[-1]
    assert brand_chip[4:] not in {it["brand"] for it in cheap.items}  # earlier constraints still hold
    colour_chips = [c for c in cheap.chips if c.removeprefix("not ") in {c2 for it in cheap.items
                                                                          for c2 in backend.view(it["id"]).colours}]
    assert colour_chips, cheap.chips
    colour = colour_chips[0].removeprefix("not ")
    no_colour = list(backend.stream(sid, colour_chips[0]))[-1]
    assert colour_chips[0] in [w for w, _ in backend.constraints(sid)]  # 'not black' shown in words
    assert no_colour.items and not [it["id"] for it in no_colour.items  # no single-colour item of that colour
                                    if backend.catalog.get(it["id"]).attributes.get("colour") == colour]


def test_constraints_in_words_and_each_removable():
    c = Constraints(include_brands=["Pilot"], exclude_brands=["BIC", "AT&amp;T"], include_categories=["Gel Pens"],
                    exclude_categories=["Markers"], attributes={"colour": "blue,red", "size_word": "large"},
                    avoid_attributes={"colour": "black"}, max_price=10.0, min_price=2.5)
    parts = constraint_parts(c, rejected=2)
    assert [w for w, _ in parts] == ["brand Pilot", "not BIC", "not AT&T", "in Gel Pens", "no Markers",
                                     "colour blue or red", "size large", "not black", "under $10", "over $2.5",
                                     "not the 2 items you dismissed"]
    assert constraint_parts(Constraints()) == []
    b = _tiny_backend()
    sid = b.new_session("")
    s = b.rec.store.get(sid)
    s.constraints, s.rejected = c, ["g1", "g2"]
    b.rec.store.put(s)
    words = [w for w, _ in b.constraints(sid)]
    for w in list(words):  # each one goes, exactly that one
        assert b.remove_constraint(sid, w), w
        rest = [x for x, _ in b.constraints(sid)]
        assert w not in rest and len(rest) == len(words) - 1, (w, rest)
        words = rest
    assert b.rec.store.get(sid).constraints.is_empty() and b.rec.store.get(sid).rejected == []
    assert not b.remove_constraint(sid, "not BIC") and not b.remove_constraint("no-such-session", "not BIC")


def test_removing_a_constraint_changes_the_next_list():
    b = _tiny_backend()
    sid = b.new_session("")
    list(b.stream(sid, "gel pens"))
    r = list(b.stream(sid, "not Sharpie"))[-1]
    assert "not Sharpie" in [w for w, _ in b.constraints(sid)] and not any(it["brand"] == "Sharpie" for it in r.items)
    assert b.remove_constraint(sid, "not Sharpie") and not b.remove_constraint(sid, "not Sharpie")
    assert "not Sharpie" not in [w for w, _ in b.constraints(sid)]
    assert b.rec.store.get(sid).constraints.exclude_brands == []
    again = list(b.stream(sid, "sharpie gel pens"))[-1]
    assert any(it["brand"] == "Sharpie" for it in again.items)


def test_clear_drops_the_session_and_its_constraints(backend):
    sid = backend.new_session("3")
    list(backend.stream(sid, "I need gel pens, not BIC"))
    assert backend.rec.store.get(sid).constraints.exclude_brands == ["BIC"]
    new = backend.reset(sid, "3")
    assert new != sid and backend.rec.store.get(sid) is None
    s = backend.rec.store.get(new)
    assert s.constraints.is_empty() and s.turns == [] and s.rejected == [] and s.history  # sample user kept
    assert backend.constraints(new) == []


def test_clear_during_a_turn_does_not_bring_the_old_session_back(backend):
    sid = backend.new_session("")
    assert backend.claim(sid)  # a turn is running
    new = backend.reset(sid, "")
    ups = list(backend.stream(sid, "I need gel pens, not BIC", claimed=True))  # ... and finishes after Clear
    assert ups[-1].items
    assert backend.rec.store.get(sid) is None and backend.rec.store.get(new).constraints.is_empty()
    assert not backend.is_busy(sid)


def test_a_catalogue_without_prices_says_so_once():
    from lumenrec.agent.recommender import Recommender

    cat = Catalog([Item("a", "Stapler, black", "Swingline", ["Office", "Staplers"]),
                   Item("b", "Stapler, blue", "Bostitch", ["Office", "Staplers"])])
    b = DemoBackend(Recommender(cat, KeywordRetriever(cat)))
    assert not b.has_prices and _tiny_backend().has_prices
    html = render_cards(b.item_cards([{"id": "a"}, {"id": "b"}]), prices=b.has_prices)
    assert html.count("This catalogue lists no prices.") == 1 and "price not listed" not in html
    assert "lr-price" not in html
    assert not [c for c in b.chips_for(["a", "b"]) if c.startswith("under")]  # no price band without prices


# ---------------------------------------------------------------------------------------- turns
def test_sample_user_seeds_the_session(backend):
    choices = backend.user_choices()
    assert choices[0][1] == "" and len(choices) == 1 + len(backend.conversations) == 11
    conv = backend.conversations[3]
    sid = backend.new_session("3")
    s = backend.rec.store.get(sid)
    assert s.user_id == conv.user_id and s.history == [h for h in conv.history if h in backend.catalog]
    assert backend.opening_hint("3") == conv.opening
    side = backend.side_panel(sid)
    assert f"History ({len(s.history)} items)" in side and backend.catalog.get(s.history[-1]).title[:20] in side
    scratch = backend.new_session("")
    assert backend.rec.store.get(scratch).history == []
    with pytest.raises(ConfigError, match="user"):
        backend.new_session("999")


def test_streaming_turn_each_item_once_and_isolation(backend):
    a, b = backend.new_session(""), backend.new_session("")
    ups = list(backend.stream(a, "I need gel pens"))
    assert len(ups) >= 2 and not any(u.done for u in ups[:-1]) and ups[-1].done
    final = ups[-1]
    assert final.items and all(it["id"] in backend.catalog for it in final.items)
    assert all(backend.view(it["id"]).title == it["title"] for it in final.items)
    assert final.items[0]["why"] and final.note == "" and final.show_cards
    # each item once: the cards carry the titles, the bubble only the words around them
    assert not any(it["title"] in final.text for it in final.items), final.text
    assert not any(re.match(r"\s*\d+\.\s", ln) for ln in final.text.splitlines())
    assert f"{len(final.items)} picks in the cards below" in final.text
    list(backend.stream(a, "not BIC"))
    assert "not BIC" in [w for w, _ in backend.constraints(a)]
    assert backend.constraints(b) == []  # session b is untouched by a's turns
    assert backend.rec.store.get(b).turns == []
    ub = list(backend.stream(b, "I need a stapler"))[-1]
    assert backend.rec.store.get(b).constraints.exclude_brands == [] and ub.items


def test_one_turn_at_a_time_per_session(backend):
    sid = backend.new_session("")
    assert backend.claim(sid)  # as the UI does when it accepts a message
    ups = list(backend.stream(sid, "I need gel pens"))  # a second submit while the first runs
    assert len(ups) == 1 and ups[0].busy and ups[0].text == "" and not ups[0].items
    assert backend.rec.store.get(sid).turns == []  # nothing ran, nothing recorded
    other = backend.new_session("")
    assert list(backend.stream(other, "I need gel pens"))[-1].items  # other sessions are not blocked
    done = list(backend.stream(sid, "I need gel pens", claimed=True))[-1]
    assert done.items and not backend.is_busy(sid)  # released when the turn ends
    assert list(backend.stream(sid, "not BIC"))[-1].items


def test_a_failing_turn_releases_the_session(backend, monkeypatch):
    sid = backend.new_session("")

    def boom(*a, **k):
        raise RuntimeError("retriever down")
        yield  # pragma: no cover

    monkeypatch.setattr(backend.rec, "chat_stream", boom)
    with pytest.raises(RuntimeError):
        list(backend.stream(sid, "I need gel pens"))
    assert not backend.is_busy(sid)


# ------------------------------------------------------------------------------------------- LLM
def _closed_port_url() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_unreachable_llm_falls_back_and_says_so(backend):
    url = _closed_port_url()
    sid = backend.new_session("")
    t0 = time.perf_counter()
    final = list(backend.stream(sid, "I need gel pens", use_llm=True, base_url=url))[-1]
    assert time.perf_counter() - t0 < 5
    assert final.items and "fell back" in final.note and url in final.note
    off = list(backend.stream(sid, "not BIC", use_llm=True, base_url=""))[-1]  # switch on without a URL: offline
    assert off.note == ""
    bad = list(backend.stream(sid, "gel pens", use_llm=True, base_url="localhost:8001"))[-1]  # not a URL: offline
    assert bad.items and "not usable" in bad.note
    with pytest.raises(ConfigError, match="llm_base_url"):
        backend.agent(True, "ftp://x")
    assert "Not a usable URL" in backend.check_llm(True, "ftp://x")
    assert "cannot be reached" in backend.check_llm(True, url)


def test_probe_of_a_hung_endpoint_ends_at_its_timeout():
    with silent_endpoint() as url:
        t0 = time.perf_counter()
        ok, why = probe_llm(url, timeout_s=0.5)
        dt = time.perf_counter() - t0
    assert not ok and "did not answer within 0.5 s" in why and dt < 2.0
    with FakeOpenAIServer("timeout", delay_s=120) as stuck:  # lists its models, never finishes a completion
        ok, why = probe_llm(stuck.base_url, timeout_s=2.0)
    assert ok and "answers (fake" in why and stuck.requests == 0


def test_a_hung_endpoint_costs_one_probe_not_a_turn_of_timeouts(backend):
    b = DemoBackend(backend.rec, llm_timeout_s=20.0, llm_probe_timeout_s=0.5)
    with silent_endpoint() as url:
        sid = b.new_session("")
        t0 = time.perf_counter()
        first = list(b.stream(sid, "I need gel pens", use_llm=True, base_url=url))[-1]
        t1 = time.perf_counter() - t0
        second = list(b.stream(sid, "not BIC", use_llm=True, base_url=url))[-1]
        t2 = time.perf_counter() - t0 - t1
    assert first.items and "did not answer within 0.5 s" in first.note and "fell back" in first.note
    assert t1 < 3.0, t1  # one 0.5 s probe, never the 20 s router timeout
    assert second.items and t2 < 1.5, t2  # the probe result is remembered: no wait at all


def test_one_llm_failure_skips_the_llm_for_the_rest_of_the_turn(backend):
    pytest.importorskip("langchain_openai", reason="the LLM router needs the langchain extra")
    timeout = 2.0
    b = DemoBackend(backend.rec, llm_timeout_s=timeout, llm_probe_timeout_s=1.0)
    with FakeOpenAIServer("timeout", delay_s=120) as stuck:  # lists its models, never finishes a completion
        url = stuck.base_url
        sid = b.new_session("")
        t0 = time.perf_counter()
        final = list(b.stream(sid, "I need gel pens", use_llm=True, base_url=url))[-1]
        dt = time.perf_counter() - t0
        calls = stuck.requests
    # the router waited its timeout once; the 3 narratives did not wait theirs (that was 4 x timeout)
    assert final.items and "fell back" in final.note and url in final.note
    assert calls == 1, calls
    assert dt < 2 * timeout + 1.5, dt


def test_the_breaker_skips_llm_calls_after_the_first_failure():
    from lumenrec.agent.serving.demo_app import _Breaker, _FailFastLLM
    from lumenrec.errors import LLMError

    class Flaky:
        model = "m"

        def __init__(self):
            self.calls = 0

        def generate(self, messages, max_tokens, temperature):
            self.calls += 1
            raise TimeoutError("slow")

    inner, br = Flaky(), _Breaker()
    llm = _FailFastLLM(inner, br)
    for _ in range(3):
        with pytest.raises(LLMError):
            llm.generate([{"role": "user", "content": "x"}], 8, 0.0)
    assert inner.calls == 1 and br.tripped and "slow" in br.reason


def test_app_builds_with_the_expected_parts(backend):
    gr = pytest.importorskip("gradio")
    app = build_app(backend)
    assert isinstance(app, gr.Blocks)
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {"lr-chat", "lr-input", "lr-send", "lr-cards", "lr-side", "lr-user", "lr-use-llm", "lr-base-url",
            "lr-status", "lr-llm-status", "lr-cons-head"} <= ids
    assert {f"lr-chip-{i}" for i in range(MAX_CHIPS)} <= ids
    states = [b for b in app.blocks.values() if isinstance(b, gr.State)]
    assert states  # the per-browser session id


def test_concurrent_claims_admit_exactly_one(backend):
    sid = backend.new_session("")
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def go():
        barrier.wait()
        wins.append(backend.claim(sid))

    ts = [threading.Thread(target=go) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    backend.release(sid)
    assert wins.count(True) == 1
