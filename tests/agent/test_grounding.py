"""The claim checker: known answers on hand-made texts and on the tiny catalogue."""

import pytest

from lumenrec.agent.grounding import (BrandVocabulary, GroundingChecker, extract_claims, repair,
                                      split_sentences)
from lumenrec.data import Item

PILOT = Item("g2", "Pilot G2 retractable gel pens, 0.7 mm, 12 count", "Pilot", ["Office", "Writing", "Gel Pens"],
             description="Smooth writing gel ink in black.", price=9.99)


@pytest.fixture
def checker(tiny_catalog):
    return GroundingChecker(tiny_catalog)


def _unsupported(report):
    return sorted((c.kind, c.text) for c in report.unsupported)


def test_spec_example_two_unsupported_claims(checker):
    item = Item("x", "Gel pens, 12 pack", "Pilot", ["Office", "Pens"])
    r = checker.check("This 24-pack of Bic pens writes smoothly.", item)
    assert _unsupported(r) == [("brand", "Bic"), ("pack", "24-pack")]
    assert not r.supported


def test_fully_supported_text(checker):
    r = checker.check("This 12-count pack of Pilot G2 pens has a 0.7 mm tip for $9.99. The ink is black.", PILOT)
    assert r.supported, r.summary()
    kinds = sorted(c.kind for c in r.claims)
    assert kinds == ["brand", "colour", "model", "number", "number", "pack"]


@pytest.mark.parametrize("text,expected", [
    ("Each pen is 5 1/2 inch long.", [("number", "5 1/2 inch")]),
    ("It costs $12.50.", [("number", "$12.50")]),
    ("A pack of 10 pens.", [("pack", "pack of 10")]),
    ("It comes in red.", [("colour", "red")]),
    ("A fine 0.5mm tip.", [("number", "0.5mm")]),
    ("Legal size pages.", [("size", "Legal size")]),
    ("Pairs well with the PG-245 cartridge.", [("model", "PG-245")]),
    ("It holds a dozen refills.", []),  # 12 count is a fact: a dozen is supported
    ("Made by Pilot.", []),
])
def test_each_claim_kind(checker, text, expected):
    assert _unsupported(checker.check(text, PILOT)) == expected


def test_numbers_with_units_must_match_the_unit_class(checker):
    # 0.7 exists as a length; "0.7 lb" is a weight, so it is unsupported; "12 months" is not "12 count"
    assert _unsupported(checker.check("It weighs 0.7 lb.", PILOT)) == [("number", "0.7 lb")]
    assert _unsupported(checker.check("Warranty of 12 months.", PILOT)) == [("number", "12 months")]
    assert checker.check("Twelve pens, 12 in all.", PILOT).supported


def test_fractions_dimensions_and_model_pairs():
    item = Item("t", "Scotch Transparent Tape, 3/4-inch x 1000 Inches, 6-Pack", "Scotch")
    ch = GroundingChecker(["Scotch"])
    assert ch.check("This 6-pack of 3/4 x 1000 inch rolls.", item).supported
    assert _unsupported(ch.check("Rolls of 1/2 x 1000 inch.", item)) == [("number", "1/2 x 1000 inch")]
    hp = Item("h", "HP 21/22 Ink Cartridge-Combo Pack", "HP")
    assert GroundingChecker(["HP"]).check("It bundles the HP 21 and 22 cartridges.", hp).supported


def test_history_and_extra_texts_are_facts(checker, tiny_catalog):
    item = tiny_catalog.get("p2")  # Pilot black gel pen, 4 pack
    text = "Unlike the blue Bic 12 pack you bought, this Pilot pen is black."
    assert _unsupported(checker.check(text, item)) == [("brand", "Bic"), ("colour", "blue"), ("pack", "12 pack")]
    assert checker.check(text, item, history=[tiny_catalog.get("p1")]).supported
    assert checker.check("Not red this time.", item, extra_texts=["anything but red please"]).supported


def test_brand_written_in_the_title_is_supported():
    item = Item("n", "Post-it Super Sticky Notes, 3 x 3 in", "3M")
    ch = GroundingChecker(["3M", "Post-it", "Avery"])
    assert ch.check("These Post-it notes from 3M measure 3 x 3 in.", item).supported
    assert _unsupported(ch.check("Better than Avery.", item)) == [("brand", "Avery")]


def test_common_word_brands_need_capitals_mid_sentence():
    items = [Item("a", "Cross Townsend pen", "Cross"), Item("b", "Cross-cut shredder with cross cut blades"),
             Item("c", "Paper with a cross pattern"), Item("d", "Bic pen", "Bic")]
    vocab = BrandVocabulary.from_catalog(items)
    assert "cross" in vocab.ambiguous and "bic" not in vocab.ambiguous
    ch = GroundingChecker(vocab)
    item = Item("z", "Stapler", "Swingline")
    assert ch.check("Cross the room and staple. Lines cross here.", item).supported
    assert _unsupported(ch.check("It beats the Cross pen. So does bic.", item)) == [("brand", "Cross"), ("brand", "bic")]


def test_spans_point_at_the_claim():
    text = "A 24-pack in teal."
    claims = extract_claims(text)
    assert [(text[a:b], c.kind) for c in claims for a, b in [c.span]] == [("24-pack", "pack"), ("teal", "colour")]


def test_repair_drops_only_the_bad_sentences(checker):
    text = "These Pilot pens write well. This 24-pack is red. Each costs $9.99."
    r = checker.check(text, PILOT)
    assert _unsupported(r) == [("colour", "red"), ("pack", "24-pack")]
    assert repair(text, r) == "These Pilot pens write well. Each costs $9.99."
    fixed, report = checker.repair(text, PILOT)
    assert fixed == "These Pilot pens write well. Each costs $9.99." and not report.supported
    assert checker.check(fixed, PILOT).supported
    assert repair("Bic 24-pack.", checker.check("Bic 24-pack.", PILOT)) == ""


def test_sentence_split_keeps_decimals():
    text = "It is 0.7 mm. Nice! Really"
    assert [text[a:b].strip() for a, b in split_sentences(text)] == ["It is 0.7 mm.", "Nice!", "Really"]


def test_human_written_dev_narratives_are_mostly_grounded(shared_data):
    """The checker's false-alarm rate on the hand-written REGEN-style narratives stays low."""
    from lumenrec.agent.narrative import NarrativeGenerator
    from lumenrec.data import NARRATIVE_KINDS
    from lumenrec.data.registry import load_dataset

    ds = load_dataset(str(shared_data / "amazon-office-2014"))
    from lumenrec.data import load_conversations

    convs = load_conversations(shared_data / "regen-office-dev" / "conversations.jsonl", ds.catalog)
    gen = NarrativeGenerator(None, ds.catalog)
    flagged = total = 0
    for conv in convs:
        item, hist = ds.catalog.get(conv.target), [ds.catalog.get(i) for i in conv.history]
        for kind in NARRATIVE_KINDS:
            total += 1
            rep = gen.checker.check(getattr(conv.narratives, kind), gen.facts(kind, item, hist, conv.critique))
            flagged += not rep.supported
    assert total == 450
    assert flagged <= 0.03 * total, f"{flagged} of {total} human narratives flagged"
