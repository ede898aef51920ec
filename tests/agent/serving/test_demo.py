"""The demo's backend (no browser): cards, sample users, streaming, isolation, LLM fallback, app wiring."""

from __future__ import annotations

import socket

import pytest

from lumenrec.agent.serving.demo_app import CHIPS, DemoBackend, DemoConfig, build_app, render_cards, render_side
from lumenrec.errors import ConfigError

DATA = "synthetic:num_items=500,num_users=800,num_conversations=30"


@pytest.fixture(scope="module")
def backend():
    return DemoBackend.from_config(DemoConfig(data=DATA, max_sample_users=10))


def test_cards_escape_and_show_every_field():
    html = render_cards([{"id": "7", "title": "Pens <b>bold</b>", "brand": "Pilot", "category": "Gel Pens",
                          "why": "You liked \"G2\" & more."},
                         {"id": "8", "title": "Tape", "brand": "", "category": "Tape", "why": ""}])
    assert html.count('class="lr-card"') == 2
    assert "Pens &lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html
    assert "Pilot &middot; Gel Pens" in html and "You liked &quot;G2&quot; &amp; more." in html
    assert 'data-item-id="8"' in html and html.count('class="lr-why"') == 1
    assert "No items yet" in render_cards([])
    side = render_side("Likes pens.", "not BIC", ["A", "B"], rejected=2)
    assert "Likes pens." in side and "not BIC" in side and "rejected items: 2" in side and "History (2 items)" in side


def test_config_validation():
    with pytest.raises(ConfigError, match="port"):
        DemoConfig(port=70000)
    with pytest.raises(ConfigError, match="llm_base_url"):
        DemoConfig(llm_base_url="localhost:8001")


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


def test_streaming_turn_and_isolation(backend):
    a, b = backend.new_session(""), backend.new_session("")
    ups = list(backend.stream(a, "I need gel pens"))
    assert len(ups) >= 3 and not any(u.done for u in ups[:-1]) and ups[-1].done
    texts = [u.text for u in ups[:-1]]
    assert all(texts[i].startswith(texts[i - 1]) for i in range(1, len(texts)))  # the text grows
    final = ups[-1]
    assert final.items and all(it["id"] in backend.catalog for it in final.items)
    assert all(backend.catalog.get(it["id"]).title == it["title"] for it in final.items)
    assert final.items[0]["why"] and final.note == ""
    list(backend.stream(a, "not BIC"))
    assert "not BIC" in backend.side_panel(a)
    # session b is untouched by a's turns
    assert "not BIC" not in backend.side_panel(b)
    assert backend.rec.store.get(b).turns == [] and backend.rec.store.get(b).constraints.is_empty()
    ub = list(backend.stream(b, "I need a stapler"))[-1]
    assert backend.rec.store.get(b).constraints.exclude_brands == []
    assert ub.items


def test_chips_are_critiques_the_agent_understands(backend):
    sid = backend.new_session("")
    first = list(backend.stream(sid, "I need gel pens"))[-1]
    for chip in CHIPS:
        last = list(backend.stream(sid, chip))[-1]
        assert last.items, chip
    assert first.items


def test_unreachable_llm_falls_back_and_says_so(backend):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    sid = backend.new_session("")
    final = list(backend.stream(sid, "I need gel pens", use_llm=True, base_url=url))[-1]
    assert final.items and "fell back" in final.note and url in final.note
    # switch on without a URL: the offline agent, no note
    off = list(backend.stream(sid, "not BIC", use_llm=True, base_url=""))[-1]
    assert off.note == ""
    with pytest.raises(ConfigError, match="llm_base_url"):
        backend.agent(True, "ftp://x")


def test_app_builds_with_the_expected_parts(backend):
    gr = pytest.importorskip("gradio")
    app = build_app(backend)
    assert isinstance(app, gr.Blocks)
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {"lr-chat", "lr-input", "lr-cards", "lr-side", "lr-user", "lr-use-llm", "lr-base-url"} <= ids
    assert {f"lr-chip-{i}" for i in range(len(CHIPS))} <= ids
    states = [b for b in app.blocks.values() if isinstance(b, gr.State)]
    assert states  # the per-browser session id
