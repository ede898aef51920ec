"""Multi-turn scenarios: every turn of a scripted conversation has an expected, checkable effect.

Each scenario is a list of (message, checks); a check is a function of (recommender, this reply,
the previous reply) that returns an error message or None. They run on the synthetic store (which
has prices, colours and pack sizes) through the offline agent and on the tiny catalogue of
conftest.py, so an agent that ignores a critique fails here.
"""

from __future__ import annotations

import statistics

import pytest

from lumenrec.agent.critique import effective_brand, normalize_brand
from lumenrec.agent.facts import item_colours
from lumenrec.agent.recommender import Recommender, RecommenderConfig


# ---------------------------------------------------------------------------------------------- checks
def _items(rec, reply):
    return [rec.catalog.get(i) for i in reply.item_ids]


def _brand(rec, item):
    return normalize_brand(effective_brand(item, rec.parser.brand_keys))


def has_items(rec, reply, prev):
    return None if reply.intent == "recommend" and reply.items else f"no items ({reply.intent}): {reply.text[:120]}"


def brand_absent(brand):
    def check(rec, reply, prev):
        bad = [it.title for it in _items(rec, reply) if _brand(rec, it) == normalize_brand(brand)]
        return f"{brand} still shown: {bad}" if bad else None
    return check


def brands_of_previous_absent(rec, reply, prev):
    before = {_brand(rec, it) for it in _items(rec, prev)}
    bad = [it.title for it in _items(rec, reply) if _brand(rec, it) in before]
    return f"a brand shown before is shown again: {bad}" if bad else None


def only_brand(brand):
    def check(rec, reply, prev):
        bad = [it.title for it in _items(rec, reply) if _brand(rec, it) != normalize_brand(brand)]
        return f"other brands than {brand}: {bad}" if bad else None
    return check


def colour_absent(colour):
    def check(rec, reply, prev):
        bad = [it.title for it in _items(rec, reply) if item_colours(it) == {colour}]
        return f"{colour}-only items still shown: {bad}" if bad else None
    return check


def colour_first(colour):
    def check(rec, reply, prev):
        items = _items(rec, reply)
        if not any(colour in item_colours(it) for it in items):
            return None if colour.split()[0] in reply.text.lower() else f"no {colour} item and no word of why"
        return None if colour in item_colours(items[0]) else f"the first item is not {colour}: {items[0].title}"
    return check


def _median_price(rec, reply):
    prices = [it.price for it in _items(rec, reply) if it.price is not None]
    return statistics.median(prices) if prices else None


def prices_lower(rec, reply, prev):
    a, b = _median_price(rec, prev), _median_price(rec, reply)
    return None if a is not None and b is not None and b < a else f"median price {b} not below {a}"


def prices_higher(rec, reply, prev):
    a, b = _median_price(rec, prev), _median_price(rec, reply)
    return None if a is not None and b is not None and b > a else f"median price {b} not above {a}"


def under(limit):
    def check(rec, reply, prev):
        bad = [(it.title, it.price) for it in _items(rec, reply) if it.price is not None and it.price > limit]
        return f"over ${limit}: {bad}" if bad else None
    return check


def category_has(*words):
    def check(rec, reply, prev):
        items = _items(rec, reply)
        hit = sum(any(w in " ".join(it.categories + [it.title]).lower() for w in words) for it in items)
        return None if hit * 2 > len(items) else f"fewer than half are {words}: {[it.title for it in items]}"
    return check


def none_of_previous(rec, reply, prev):
    again = set(reply.item_ids) & set(prev.item_ids)
    return f"shown again: {again}" if again else None


def topic(expected):
    def check(rec, reply, prev):
        ret = next((s for s in reply.trace if s.name == "retrieve"), None)
        got = ret.details.get("topic") if ret else None
        return None if got == expected else f"topic {got!r}, expected {expected!r}"
    return check


def anchored_on(position):
    def check(rec, reply, prev):
        anchor = prev.item_ids[position - 1]
        ret = next((s for s in reply.trace if s.name == "retrieve"), None)
        if not ret or ret.details.get("anchor") != anchor:
            return f"not anchored on #{position} ({anchor}): {ret.details if ret else None}"
        cat = rec.catalog.get(anchor).category
        same = sum(it.category == cat for it in _items(rec, reply))
        return None if same * 2 >= len(reply.items) else f"fewer than half of the anchor's kind {cat!r}"
    return check


def says(*fragments):
    def check(rec, reply, prev):
        low = reply.text.lower()
        missing = [f for f in fragments if f.lower() not in low]
        return f"reply does not say {missing}: {reply.text[:200]}" if missing else None
    return check


def constraint_words(*fragments):
    def check(rec, reply, prev):
        text = reply.constraints.get("text", "")
        missing = [f for f in fragments if f.lower() not in text.lower()]
        return f"active constraints {text!r} lack {missing}" if missing else None
    return check


def no_constraint(field):
    def check(rec, reply, prev):
        return f"{field} still active: {reply.constraints['active'].get(field)}" if reply.constraints["active"].get(field) else None
    return check


def intent(name):
    def check(rec, reply, prev):
        return None if reply.intent == name else f"intent {reply.intent}, expected {name}"
    return check


def speaks_to_shopper(rec, reply, prev):
    low = reply.text.lower()
    if "this shopper" in low or "they " in low:
        return f"third person: {reply.text[:160]}"
    return None if "you" in low else f"does not speak to the shopper: {reply.text[:160]}"


# ------------------------------------------------------------------------------------------- scenarios
SYNTHETIC = {
    # brands
    "not-bic": [("I need ballpoint pens", [has_items]), ("not BIC", [has_items, brand_absent("BIC")])],
    "not-pilot-again": [("gel pens please", [has_items]), ("no more Pilot, something else", [has_items, brand_absent("Pilot")])],
    "not-hp-ink": [("printer ink cartridges", [has_items]), ("not HP", [has_items, brand_absent("HP")])],
    "only-sharpie": [("permanent markers", [has_items]), ("Sharpie please", [has_items, only_brand("Sharpie")])],
    "different-brand": [("I need a stapler", [has_items]), ("a different brand", [has_items, brands_of_previous_absent])],
    "different-brand-notebooks": [("spiral notebooks", [has_items]), ("show me another brand", [has_items, brands_of_previous_absent])],
    "exclusions-accumulate": [("highlighters", [has_items]), ("not Sharpie", [brand_absent("Sharpie")]),
                              ("not BIC either", [has_items, brand_absent("Sharpie"), brand_absent("BIC")])],
    "relax-an-exclusion": [("pencils", [has_items]), ("not Paper Mate", [brand_absent("Paper Mate")]),
                           ("actually Paper Mate is fine", [has_items, no_constraint("exclude_brands")])],
    # colours
    "not-black-pens": [("gel pens", [has_items]), ("not black", [has_items, colour_absent("black")])],
    "no-black-binders": [("3-ring binders", [has_items]), ("nothing in black please", [has_items, colour_absent("black")])],
    "want-blue": [("ballpoint pens", [has_items]), ("in blue", [has_items, colour_first("blue")])],
    "want-red-folders": [("file folders", [has_items]), ("red ones", [has_items, colour_first("red")])],
    "not-white-labels": [("address labels", [has_items]), ("not white", [has_items, colour_absent("white")])],
    "colour-words-in-constraints": [("sticky notes", [has_items]), ("not yellow", [constraint_words("no yellow")])],
    # price
    "cheaper-pens": [("gel pens", [has_items]), ("something cheaper", [has_items, prices_lower])],
    "cheaper-twice": [("laser printers", [has_items]), ("cheaper", [prices_lower]), ("even cheaper", [has_items, prices_lower])],
    "cheaper-binders": [("binders", [has_items]), ("too expensive, cheaper please", [has_items, prices_lower])],
    "pricier-shredder": [("a shredder", [has_items]), ("something more premium", [has_items, prices_higher])],
    "under-ten": [("notebooks under $10", [has_items, under(10.0)])],
    "under-five-then-cheaper": [("pens under $5", [has_items, under(5.0)]), ("cheaper", [prices_lower, under(5.0)])],
    "price-in-words": [("printer paper", [has_items]), ("cheaper", [constraint_words("under $")])],
    # references
    "more-like-2": [("desk organizers", [has_items]), ("more like #2", [has_items, anchored_on(2), none_of_previous])],
    "more-like-the-first": [("markers", [has_items]), ("more like the first one", [has_items, anchored_on(1), none_of_previous])],
    "something-else": [("calculators", [has_items]), ("something else", [has_items, none_of_previous])],
    "not-this-one": [("label makers", [has_items]), ("none of these", [has_items, none_of_previous])],
    # topic
    "topic-switch": [("I need sticky notes", [has_items, category_has("note")]),
                     ("now I need a desk lamp instead", [topic("new need")])],
    "topic-switch-drops-brand": [("Pilot gel pens", [has_items, only_brand("Pilot")]),
                                 ("totally different need: envelopes", [has_items, topic("new need"), no_constraint("include_brands")])],
    "topic-switch-keeps-rule-outs": [("pens, not BIC", [brand_absent("BIC")]),
                                     ("next up: highlighters", [has_items, topic("new need"), brand_absent("BIC")])],
    "refinement-keeps-the-need": [("spiral notebooks", [has_items, category_has("notebook")]),
                                  ("not Mead", [has_items, topic("refines the previous request"), category_has("notebook"),
                                                brand_absent("Mead")])],
    "refine-twice": [("mechanical pencils", [has_items]), ("not Pentel", [brand_absent("Pentel")]),
                     ("cheaper", [has_items, prices_lower, brand_absent("Pentel"), topic("refines the previous request")])],
    # relaxation and acknowledgement
    "relaxation-said": [("Pilot gel pens in purple under $0.50", [has_items, says("nothing matched")])],
    "constraints-in-reply": [("ballpoint pens, not BIC, under $20", [has_items, constraint_words("not BIC", "under $20")])],
    "avoided-colour-in-words": [("binders, not black", [has_items, colour_absent("black"), constraint_words("no black")])],
    # memory
    "what-do-you-know": [("gel pens, not Pilot", [has_items]),
                         ("what do you know about me?", [intent("summarize_user"), speaks_to_shopper, says("pilot")])],
    "summary-mentions-need": [("I need a paper shredder", [has_items]),
                              ("what have you learned about me", [intent("summarize_user"), speaks_to_shopper, says("shredder")])],
    # routing inside a conversation
    "greeting-with-need": [("Hi there! I'm shopping for mailing supplies for my small business.", [has_items])],
    "thanks-after-picks": [("staplers", [has_items]), ("thanks!", [intent("smalltalk")])],
    "explain-second": [("calculators", [has_items]), ("why the second one?", [intent("explain"), says("#2")])],
}

TINY = {
    "tiny-not-hp": [("ink cartridges", [has_items]), ("not HP", [has_items, brand_absent("HP")])],
    "tiny-brandless-hp-title": [("ink", [has_items]), ("not HP again", [has_items, brand_absent("HP")])],
    "tiny-cheaper": [("pens", [has_items]), ("cheaper", [has_items, prices_lower])],
    "tiny-topic": [("sticky notes", [has_items]), ("now I need printer ink", [has_items, topic("new need"), category_has("ink")])],
    "tiny-more-like": [("pens", [has_items]), ("more like #1", [has_items, none_of_previous])],
}


def _run(rec, name, script):
    prev = None
    for turn, (msg, checks) in enumerate(script, 1):
        reply = rec.chat(f"scenario-{name}", msg)
        errors = [e for e in (c(rec, reply, prev) for c in checks) if e]
        assert not errors, f"{name}, turn {turn} {msg!r}: " + "; ".join(errors)
        prev = reply


@pytest.fixture(scope="module")
def synthetic_rec():
    base = Recommender.from_dataset("synthetic")
    return lambda: Recommender(base.catalog, base.retriever, parser=base.parser,
                               config=RecommenderConfig(top_k=5, narrate_top=1))


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_scenario(name, synthetic_rec):
    _run(synthetic_rec(), name, SYNTHETIC[name])


@pytest.fixture()
def tiny_rec(tiny_catalog):
    from lumenrec.data import Catalog, Item

    # one brand-less HP cartridge named by its title: "not HP" must remove it too
    cat = Catalog(list(tiny_catalog) + [Item("t3", "HP 65 tri-color ink cartridge", "", ["Office", "Ink", "Inkjet"], price=21.0)])
    from lumenrec.retriever.text_retriever import TextRetriever

    return Recommender(cat, TextRetriever(cat), config=RecommenderConfig(top_k=3, narrate_top=1))


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_scenario(name, tiny_rec):
    _run(tiny_rec, name, TINY[name])


def test_there_are_at_least_forty_scenarios():
    assert len(SYNTHETIC) + len(TINY) >= 40
