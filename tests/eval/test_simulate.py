"""The simulated shopper (`lumenrec eval simulate`): facts, critiques, success, violations, the CLI, the LLM shopper.

Unit tests run on a 10-item catalogue whose answers are known; the CLI runs end to end on a small
synthetic store with the real text agent; the LLM shopper talks to a local HTTP server that fakes an
OpenAI-compatible endpoint.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from lumenrec.agent.recommender import Reply, TraceStep
from lumenrec.agent.session import InMemorySessionStore
from lumenrec.data import Catalog, Item
from lumenrec.errors import ConfigError
from lumenrec.eval.simulate import (Fact, FactExtractor, LLMShopper, RuleShopper, SimSystem, SimTarget, SimulateConfig,
                                    _HistoryOnly, aggregate_simulation, followed, load_targets, pack_of,
                                    shown_violations, simulate_target, sizes_of)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent" / "serving"))
from server_fakes import FakeOpenAIServer, KeywordRetriever  # noqa: E402

ORDER = ["brand", "colour", "size", "pack", "price"]
SMALL = "synthetic:num_items=300,num_users=300,num_conversations=12,num_brands=16"


@pytest.fixture
def cat() -> Catalog:
    pens, bp = ["Office", "Writing", "Gel Pens"], ["Office", "Writing", "Ballpoint Pens"]
    return Catalog([
        Item("g1", "Pilot G2 gel pens, black ink, 12 pack", "Pilot", pens, price=9.0),
        Item("g2", "Pilot G2 gel pens, blue ink, 4 pack", "Pilot", pens, price=5.0),
        Item("g3", "Zebra Sarasa gel pens, black ink, 12 pack", "Zebra", pens, price=8.0),
        Item("g4", "HP gel pens, red, 10 pack", "", pens, price=6.0),  # brand-less, the title names HP
        Item("g5", "Pilot G2 gel pens, black ink, 12 pack (value box)", "Pilot", pens, price=9.5),
        Item("b1", "Bic Cristal ballpoint pens, blue, 10 pack", "Bic", bp, price=3.0),
        Item("b2", "Bic Round Stic ballpoint pens, black, 60 count", "Bic", bp, price=7.0),
        Item("n1", "Post-it notes, 3x3 in, yellow, 12 pads", "Post-it", ["Office", "Paper", "Sticky Notes"], price=10.0),
        Item("t1", "HP 63 black ink cartridge", "HP", ["Office", "Ink", "Ink Cartridges"], price=24.0),
        Item("a1", "Acme notebook", "Acme", ["Office", "Paper", "Notebooks"], price=4.0,
             attributes={"colour": "green", "size": "A5", "pack": "3"}),
    ])


# ------------------------------------------------------------------------------------------- facts
def test_facts_come_from_attributes_else_from_the_title(cat):
    ex = FactExtractor(cat)
    g1 = ex.facts("g1")
    assert (g1.brand, g1.colours, g1.pack, g1.category, g1.category_words) == ("Pilot", ("black",), 12, "Gel Pens", "gel pens")
    assert ex.facts("g4").brand == "HP"  # empty brand field, the title starts with a catalogue brand
    assert ex.facts("n1").sizes == {"3 x 3 in"}
    a1 = ex.facts("a1")  # the title says nothing; the attributes do
    assert (a1.colours, a1.sizes, a1.pack) == (("green",), {"a5"}, 3)


@pytest.mark.parametrize("text, sizes, pack", [
    ("Copy Paper, 8.5 x 11 Inches, 500 Sheets, Pack of 5", {"8.5 x 11 in"}, 5),
    ("Laminating Pouches, Letter Size, 50/Pack", {"letter"}, 50),
    ("Gel Pen, 0.7mm, 2 Count", {"0.7 mm"}, 2),
    ("Binder, 1-1/2 Inch, Black", {"1 1/2 in"}, None),
    ("Desk Lamp", set(), None),
    ("Magazine Rack, 10.5 x 10.25 x 3.5 Inches", set(), None),  # W x D x H is no size a shopper asks for
])
def test_size_and_pack_patterns(text, sizes, pack):
    assert sizes_of(text) == sizes
    assert pack_of(text) == pack


# ---------------------------------------------------------------------------------------- the shopper
def test_the_opening_is_a_vague_need_without_title_or_brand(cat):
    ex = FactExtractor(cat)
    for level in ("parent", "leaf"):
        shopper = RuleShopper(ex, opening=level)
        for it in cat:
            for seed in range(4):
                text, facts = shopper.opening(it.id, np.random.default_rng(seed))
                low = text.lower()
                assert it.title.lower() not in low
                if it.brand:
                    assert it.brand.lower() not in low, text
                assert facts[0].kind == "need"
    leaf = RuleShopper(ex, opening="leaf").opening("g1", np.random.default_rng(0))[0]
    parent = RuleShopper(ex, opening="parent").opening("g1", np.random.default_rng(0))[0]
    assert "gel pens" in leaf and "writing" in parent and "gel" not in parent


def test_an_off_category_list_gets_the_product_type(cat):
    shopper = RuleShopper(FactExtractor(cat), facts_per_turn=1)
    text, facts = shopper.critique("g1", ["b1", "b2"], [], ORDER, np.random.default_rng(0))
    assert facts == [Fact("category", "include", "Gel Pens")]
    assert "gel pens" in text


@pytest.mark.parametrize("prob, expect_fact, expect_word", [
    (1.0, Fact("brand", "include", "pilot"), "Pilot"),  # names the target's brand
    (0.0, Fact("brand", "exclude", "zebra"), "Zebra"),  # rules out the most shown wrong brand
])
def test_a_wrong_brand_gets_a_brand_critique(cat, prob, expect_fact, expect_word):
    shopper = RuleShopper(FactExtractor(cat), facts_per_turn=1, name_brand_prob=prob)
    # g3 (Zebra) and g4 (HP by its title) are both wrong: the first one shown is ruled out
    text, facts = shopper.critique("g1", ["g3", "g4"], [], ORDER, np.random.default_rng(0))
    assert facts == [expect_fact]
    assert expect_word in text


def test_colour_pack_and_price_are_named_from_the_target(cat):
    shopper = RuleShopper(FactExtractor(cat), facts_per_turn=4, name_brand_prob=1.0)
    # g2 is blue, a 4-pack, $5: the target g1 is black, a 12-pack, $9 (more than 1.25 x 5)
    text, facts = shopper.critique("g1", ["g2"], [], ["colour", "pack", "price", "brand"], np.random.default_rng(1))
    assert [f.kind for f in facts] == ["colour", "pack", "price"]  # same brand: no brand point
    assert "black" in text and "12" in text
    assert facts[2] == Fact("price", "above", "pricier")
    # the other way round: target g2 ($5) against g1, g5 ($9, $9.5) -> cheaper or "under $5"
    _, facts = shopper.critique("g2", ["g1", "g5"], [], ["price"], np.random.default_rng(0))
    assert [f.kind for f in facts if f.kind == "price"] == ["price"]
    p = next(f for f in facts if f.kind == "price")
    assert p.op == "below" and p.value in ("cheaper", "$6")


def test_a_point_still_missed_is_repeated_and_a_met_list_is_rejected(cat):
    shopper = RuleShopper(FactExtractor(cat), facts_per_turn=1, name_brand_prob=1.0)
    said = [Fact("brand", "include", "pilot")]
    text, facts = shopper.critique("g1", ["g3"], said, ORDER, np.random.default_rng(0))
    assert facts == said and any(w in text.lower() for w in ("again", "said"))
    # said twice already: not a third time; with nothing else to say, "something else"
    text, facts = shopper.critique("g1", ["g3"], said * 2, ORDER, np.random.default_rng(0))
    assert facts == [Fact("other", "exclude", "shown")]
    # g5 matches every fact of g1 (brand, type, colour, pack, price): nothing left but "something else"
    text, facts = shopper.critique("g1", ["g5"], said, ORDER, np.random.default_rng(0))
    assert facts == [Fact("other", "exclude", "shown")]


def test_brands_are_typed_without_entities():
    from lumenrec.eval.simulate import brand_display

    assert brand_display("Scotch&reg;") == "Scotch" and brand_display("Post-it® Brand") == "Post-it Brand"


def test_followed_checks_the_list_shown_after_a_point(cat):
    ex = FactExtractor(cat)
    F = [ex.facts(i) for i in ("g1", "g3", "g4")]
    assert followed(Fact("brand", "exclude", "hp"), F[:2], [])[0] is True
    assert followed(Fact("brand", "exclude", "hp"), F, [])[0] is False  # g4: brand-less HP
    assert followed(Fact("brand", "include", "pilot"), F[:2], [])[0] is True  # 1 of 2
    assert followed(Fact("brand", "include", "pilot"), F, [])[0] is False  # 1 of 3
    before = [ex.facts("t1"), ex.facts("n1")]  # median $17
    assert followed(Fact("price", "below", "cheaper"), F, before)[0] is True
    assert followed(Fact("price", "below", "cheaper"), before, F)[0] is False
    assert followed(Fact("price", "below", "$8"), [ex.facts("g4"), ex.facts("g3")], before)[0] is True
    assert followed(Fact("price", "below", "$8"), F, before)[0] is False  # g1 is $9
    assert followed(Fact("other", "exclude", "shown"), F, F, ["g1"], ["g1"])[0] is False
    assert followed(Fact("colour", "include", "black"), [], F) == (None, None)


# -------------------------------------------------------------------------------- one conversation
class ScriptedAgent:
    """Shows a fixed list per turn and reports fixed constraints: a stand-in for the Recommender."""

    def __init__(self, lists, constraints=None, relaxed=None, paths=None) -> None:
        self.lists, self.constraints, self.relaxed = lists, constraints or {}, relaxed or {}
        self.paths = paths or {}  # turn -> the route step's "path" (what a hybrid router reports)
        self.store = InMemorySessionStore()
        self.turn = 0
        self.messages: list[str] = []

    def chat(self, sid, text):
        self.messages.append(text)
        ids = self.lists[min(self.turn, len(self.lists) - 1)]
        det = {"constraints": self.constraints.get(self.turn, {}), "relaxed": self.relaxed.get(self.turn, False)}
        trace = [TraceStep("retrieve", 0.0, det)]
        if self.turn in self.paths:
            trace.insert(0, TraceStep("route", 0.0, {"path": self.paths[self.turn]}))
        self.turn += 1
        return Reply(text="", items=[{"id": i} for i in ids], intent="recommend", trace=trace)


def _target(i="g1", index=0):
    return SimTarget(index, "u1", ["b1"], i, "test")


def test_success_is_the_first_turn_showing_the_target(cat):
    ex = FactExtractor(cat)
    agent = ScriptedAgent([["b1", "b2"], ["g3", "g4"], ["g3", "g1"], ["g1"]])
    r = simulate_target(SimSystem(name="s"), agent, RuleShopper(ex), _target(), cat, ex, seed=0, max_turns=5)
    assert r["success_turn"] == 3 and [t["hit"] for t in r["turns"]] == [False, False, True]
    assert len(agent.messages) == 3  # the shopper stops once it sees the target
    miss = simulate_target(SimSystem(name="s"), ScriptedAgent([["b1"]]), RuleShopper(ex), _target(index=1), cat, ex,
                           seed=0, max_turns=4)
    assert miss["success_turn"] is None and len(miss["turns"]) == 4
    s = aggregate_simulation([r, miss])["systems"]["s"]
    assert s["success_at_turn"] == {"1": 0.0, "2": 0.0, "3": 0.5, "4": 0.5}
    assert s["mean_turns_to_success"] == 3.0 and s["successes"] == 1
    assert "route_paths" not in s  # an agent whose router reports no path


def test_the_route_path_of_each_turn_is_counted(cat):
    # a hybrid router says per turn whether the rules or the local LLM decided
    ex = FactExtractor(cat)
    agent = ScriptedAgent([["b1"], ["g3"], ["g1"]], paths={0: "rules", 1: "llm", 2: "rules"})
    r = simulate_target(SimSystem(name="h"), agent, RuleShopper(ex), _target(), cat, ex, seed=0, max_turns=5)
    assert [t.get("route_path") for t in r["turns"]] == ["rules", "llm", "rules"]
    assert aggregate_simulation([r])["systems"]["h"]["route_paths"] == {"rules": 2, "llm": 1}


def test_violations_are_counted_from_a_broken_agent(cat):
    ex = FactExtractor(cat)
    # turn 1 reports "not HP" and shows two HP items (g4 only by its title); turn 2 "Pilot only" and
    # shows Zebra; turn 3 "no ballpoint pens" and shows one; turn 4 is a relaxation (only "not HP" stays).
    agent = ScriptedAgent([["g4", "t1", "g3"], ["g1", "g3"], ["b1", "g1"], ["g3", "g1"], ["g2"]],
                          constraints={0: {"exclude_brands": ["HP"]}, 1: {"include_brands": ["Pilot"]},
                                       2: {"exclude_categories": ["Ballpoint Pens"], "include_brands": ["Pilot", "Bic"]},
                                       3: {"include_brands": ["Pilot"], "max_price": 1.0}},
                          relaxed={3: True})
    r = simulate_target(SimSystem(name="broken"), agent, RuleShopper(ex), _target("a1"), cat, ex, seed=0, max_turns=5)
    got = [(t["turn"], v["item"], v["constraint"]) for t in r["turns"] for v in t["violations"]]
    assert got == [(1, "g4", "exclude_brands"), (1, "t1", "exclude_brands"), (2, "g3", "include_brands"),
                   (3, "b1", "exclude_categories")]
    s = aggregate_simulation([r], catalog=cat)["systems"]["broken"]["violations"]
    assert s["count"] == 4 and s["by_constraint"] == {"exclude_brands": 2, "include_brands": 1, "exclude_categories": 1}
    assert s["list"][0]["title"].startswith("HP gel pens")
    assert shown_violations({"max_price": 8.0, "min_price": 4.0}, False, ["g1", "b1", "g3"], cat, ex) == [
        {"item": "g1", "constraint": "max_price", "value": 8.0}, {"item": "b1", "constraint": "min_price", "value": 4.0}]
    # an avoided colour: g4 is red only; g1 black; t1 black; the notebook green by its attribute
    assert shown_violations({"avoid_attributes": {"colour": "red,green"}}, False, ["g4", "g1", "a1", "t1"], cat, ex) == [
        {"item": "g4", "constraint": "avoid_attributes.colour", "value": ["red"]},
        {"item": "a1", "constraint": "avoid_attributes.colour", "value": ["green"]}]
    assert shown_violations({"avoid_attributes": {"colour": "red"}}, True, ["g4"], cat, ex) == []  # relaxed


def test_the_real_agent_breaks_none_of_its_constraints(cat):
    from lumenrec.agent.recommender import Recommender

    ex = FactExtractor(cat)
    rec = Recommender(cat, KeywordRetriever(cat))
    shopper = RuleShopper(ex, name_brand_prob=0.0)  # "not X" critiques: the constraint every turn keeps
    recs = [simulate_target(SimSystem(name="agent"), rec, shopper, _target(t, i), cat, ex, seed=3, max_turns=5)
            for i, t in enumerate(["g1", "g2", "a1", "n1", "t1", "b2"])]
    s = aggregate_simulation(recs)["systems"]["agent"]
    assert s["violations"]["turns_checked"] >= 6
    assert s["violations"]["count"] == 0, s["violations"]["list"]
    assert any(t.get("constraints", {}).get("exclude_brands") for r in recs for t in r["turns"])


def test_the_same_seed_gives_the_same_shopper(cat):
    from lumenrec.agent.recommender import Recommender

    ex = FactExtractor(cat)

    def run(seed):
        rec = Recommender(cat, KeywordRetriever(cat))
        out = simulate_target(SimSystem(name="a"), rec, RuleShopper(ex), _target("g2", 7), cat, ex, seed=seed, max_turns=5)
        for t in out["turns"]:
            t.pop("ms")
        return out

    assert run(0) == run(0)
    texts = {tuple(t["text"] for t in run(s)["turns"]) for s in range(6)}
    assert len(texts) > 1  # the seed matters


def test_history_only_ignores_the_shopper_and_pages(cat):
    ex = FactExtractor(cat)
    ret = KeywordRetriever(cat)
    ranking = _HistoryOnly(ret, 2, True, 3).ranking(["b1"])
    assert len(ranking) == 6 and "b1" not in ranking
    for paged, expect in ((True, [ranking[0:2], ranking[2:4], ranking[4:6]]), (False, [ranking[0:2]] * 3)):
        target = next(i for i in cat.ids if i not in ranking and i != "b1")
        r = simulate_target(SimSystem(name="h", mode="history", paged=paged), _HistoryOnly(ret, 2, paged, 3),
                            RuleShopper(ex), _target(target), cat, ex, seed=0, max_turns=3)
        assert [t["shown"] for t in r["turns"]] == expect
        assert all(t["intent"] == "history" and "violations" not in t for t in r["turns"])


# ------------------------------------------------------------------------------------------- configs
def test_configs_reject_bad_values():
    assert SimSystem.parse("h:mode=history,paged=1,recommender_dir=.").paged is True
    with pytest.raises(ConfigError, match="mode"):
        SimSystem(mode="oracle")
    with pytest.raises(ConfigError, match="paged"):
        SimSystem(paged=True)  # agent mode does not page
    for kw, name in [({"targets": "dev"}, "targets"), ({"max_turns": 0}, "max_turns"), ({"shopper": "human"}, "shopper"),
                     ({"facts_per_turn": 9}, "facts_per_turn"), ({"name_brand_prob": 2.0}, "name_brand_prob"),
                     ({"opening": "title"}, "opening"), ({"systems": [SimSystem(name="a"), SimSystem(name="a")]}, "systems"),
                     ({"shopper_llm_base_url": "localhost:8001"}, "shopper_llm_base_url")]:
        with pytest.raises(ConfigError, match=name):
            SimulateConfig(**kw)


def test_test_targets_are_a_seeded_sample_of_other_users():
    from lumenrec.data.registry import load_dataset

    ds = load_dataset(SMALL)
    a = load_targets(SimulateConfig(dataset=SMALL, targets="test", num_targets=40, seed=1), ds)
    b = load_targets(SimulateConfig(dataset=SMALL, targets="test", num_targets=40, seed=1), ds)
    c = load_targets(SimulateConfig(dataset=SMALL, targets="test", num_targets=40, seed=2), ds)
    assert [t.target for t in a] == [t.target for t in b] and [t.user_id for t in a] != [t.user_id for t in c]
    conv_users = {x.user_id for x in ds.conversations}
    assert len(a) == 40 and not conv_users & {t.user_id for t in a}
    for t in a:
        seq = ds.interactions.user(t.user_id).items
        assert t.target == ds.catalog.ids[seq[-1]] and t.history == [ds.catalog.ids[j] for j in seq[:-1]]
    convs = load_targets(SimulateConfig(dataset=SMALL), ds)
    assert [t.target for t in convs] == [x.target for x in ds.conversations]


# ------------------------------------------------------------------------------------------------ CLI
@pytest.mark.integration
def test_cli_end_to_end_on_a_small_synthetic_store(tmp_path, capsys):
    from lumenrec.agent.recommender import write_manifest
    from lumenrec.cli import main
    from lumenrec.data.registry import load_dataset

    ds = load_dataset(SMALL)
    sysdir = tmp_path / "system"
    write_manifest(sysdir, catalog=ds.catalog, retriever_kind="text")
    out = tmp_path / "run"
    argv = ["eval", "simulate", "--data", SMALL, "--limit", "6", "--system", "text-only",
            "--system", "hist:mode=history,paged=1", "--system", f"dir:recommender_dir={sysdir}", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "success@5" in printed and "report:" in printed
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted((r["system"], r["target_index"]) for r in records) == sorted(
        (s, i) for s in ("text-only", "hist", "dir") for i in range(6))
    summary = json.loads((out / "summary.json").read_text())
    for name, s in summary["systems"].items():
        mine = [r for r in records if r["system"] == name]
        at = [s["success_at_turn"][str(t)] for t in range(1, 6)]
        assert at == sorted(at) and at[-1] == sum(r["success_turn"] is not None for r in mine) / 6
        assert s["violations"]["count"] == 0
    # the same shoppers opened the same way for every system
    first = {(r["target_index"], r["turns"][0]["text"]) for r in records}
    assert len(first) == 6
    # the text agent and the same agent loaded from a directory answer alike
    by = {(r["system"], r["target_index"]): [t["shown"] for t in r["turns"]] for r in records}
    assert all(by[("text-only", i)] == by[("dir", i)] for i in range(6))
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "Success by turn" in html
    # resume: nothing to redo, same summary; other inputs in the same folder are refused
    assert main(argv) == 0
    assert len((out / "records.jsonl").read_text().splitlines()) == 18
    assert json.loads((out / "summary.json").read_text())["systems"] == summary["systems"]
    assert main(argv[:-2] + ["--seed", "5", "--out", str(out)]) == 1
    assert "other inputs" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- LLM shopper
class ShopperLLMServer:
    """A local OpenAI-compatible endpoint whose answer is `answer(prompt_text)`; keeps the prompts."""

    def __init__(self, answer) -> None:
        self.prompts: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                prompt = "\n".join(m["content"] for m in req["messages"])
                outer.prompts.append(prompt)
                body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": req["model"],
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": answer(prompt)}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _points(prompt: str) -> str:
    return prompt.rsplit("Points to make: ", 1)[1].strip()


@pytest.mark.integration
def test_the_llm_shopper_words_the_rule_points_through_an_openai_endpoint(cat):
    from lumenrec.agent.llm.backends import OpenAILLM

    ex = FactExtractor(cat)
    rule = RuleShopper(ex, facts_per_turn=2, name_brand_prob=0.0)
    srv = ShopperLLMServer(lambda p: "Well, " + _points(p).rstrip(".").lower().replace("not ", "definitely not ") + "!")
    try:
        shopper = LLMShopper(rule, OpenAILLM(srv.base_url, "fake", timeout_s=5, max_retries=0))
        agent = ScriptedAgent([["g3", "g4"], ["g3", "t1"], ["g1"]])
        r = simulate_target(SimSystem(name="llm"), agent, shopper, _target(), cat, ex, seed=0, max_turns=5)
    finally:
        srv.close()
    assert r["success_turn"] == 3
    assert all(m.startswith("Well, ") for m in agent.messages)  # the model's words reached the agent
    assert "zebra" in agent.messages[1].lower()  # ... with the rule shopper's point (rule out Zebra)
    assert not shopper.fallbacks
    assert len(srv.prompts) == 3
    assert "Zebra Sarasa gel pens" in srv.prompts[1]  # the model saw the shown list
    assert all("Pilot G2 gel pens, black ink, 12 pack" not in p for p in srv.prompts)  # never the target's title


@pytest.mark.integration
@pytest.mark.parametrize("answer, reason", [
    (lambda p: "Hello there, I would like the Pilot G2 gel pens, black ink, 12 pack please", "leaked the title"),
    (lambda p: "Something nicer, please.", "dropped a point"),
])
def test_a_bad_llm_message_falls_back_to_the_rule_text(cat, answer, reason):
    from lumenrec.agent.llm.backends import OpenAILLM

    ex = FactExtractor(cat)
    rule = RuleShopper(ex, facts_per_turn=2, name_brand_prob=0.0)
    srv = ShopperLLMServer(answer)
    try:
        shopper = LLMShopper(rule, OpenAILLM(srv.base_url, "fake", timeout_s=5, max_retries=0))
        text, facts = shopper.critique("g1", ["g3", "g4"], [], ORDER, np.random.default_rng(0))
    finally:
        srv.close()
    expect, _ = rule.critique("g1", ["g3", "g4"], [], ORDER, np.random.default_rng(0))
    assert text == expect and shopper.fallbacks[reason] == 1


@pytest.mark.integration
def test_a_failing_endpoint_falls_back_to_the_rule_text(cat):
    from lumenrec.agent.llm.backends import OpenAILLM

    ex = FactExtractor(cat)
    with FakeOpenAIServer("error") as srv:
        shopper = LLMShopper(RuleShopper(ex), OpenAILLM(srv.base_url, "fake", timeout_s=5, max_retries=0))
        text, _ = shopper.opening("g1", np.random.default_rng(0))
    assert text == RuleShopper(ex).opening("g1", np.random.default_rng(0))[0]
    assert shopper.fallbacks == {"error": 1} and srv.requests == 1
