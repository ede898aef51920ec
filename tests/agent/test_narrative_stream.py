"""Narrative prompt v2 (#19) and grounded streaming, with a scripted model: the shopper's voice, inventions
and over-long answers never reach the shopper; the recommender streams a narrative piece by piece."""

from __future__ import annotations

import pytest

from lumenrec.agent.narrative import (MAX_SENTENCES, NarrativeGenerator, build_messages, cap_sentences,
                                      shopper_voice)
from lumenrec.data import Item
from lumenrec.errors import LLMError, ToolInputError

ITEM = Item("g1", "Pilot G2 Gel Pen, Black, 12 Pack", "Pilot", ["Office", "Writing", "Pens"], price=12.0)
HIST = [Item("h1", "Yellow sticky notes", "Post-it", ["Office", "Paper", "Notes"])]


class Scripted:
    """Streams its answers word by word (one answer per call); records the prompts."""

    name, model = "scripted", "scripted-1"

    def __init__(self, *answers: str, fail: bool = False) -> None:
        self.answers, self.fail, self.prompts, self.closed = list(answers), fail, [], 0

    def generate(self, messages, max_tokens=128, temperature=0.0, stop=None):
        self.prompts.append(messages)
        if self.fail:
            raise LLMError("down")
        return self.answers.pop(0)

    def stream(self, messages, max_tokens=128, temperature=0.0, stop=None):
        text = self.generate(messages, max_tokens, temperature, stop)
        try:
            for i, w in enumerate(text.split(" ")):
                yield w if i == 0 else " " + w
        finally:
            self.closed += 1


def test_v2_prompt_names_the_voice_and_the_facts_only():
    msgs = build_messages("endorsement", ITEM, HIST, version="narrative-v2")
    assert "never write as the shopper" in msgs[-1]["content"] and "Never add a number" in msgs[0]["content"]
    assert build_messages("endorsement", ITEM, HIST)[0]["content"] != msgs[0]["content"]  # v1 stays the default
    with pytest.raises(ToolInputError):
        build_messages("endorsement", ITEM, HIST, version="narrative-v9")


def test_shopper_voice_and_sentence_cap():
    assert shopper_voice("I highly recommend them.") and shopper_voice("Great for my desk.")
    assert not shopper_voice("You will like it. It suits your desk.")
    long = "One. Two. Three. Four."
    assert cap_sentences(long, "purchase_reason") == "One. Two." and MAX_SENTENCES["purchase_reason"] == 2


def test_v2_regenerates_an_answer_in_the_shoppers_voice():
    llm = Scripted("I highly recommend these pens for my office.", "The Pilot G2 Gel Pen is a good match for you. "
                   "It comes from Pilot.")
    res = NarrativeGenerator(llm, prompt_version="narrative-v2").generate("endorsement", ITEM, HIST)
    assert res.generator == "llm+regenerated" and not shopper_voice(res.text)
    assert "Do not write as the shopper" in llm.prompts[1][-1]["content"]


def test_v2_cuts_an_answer_that_runs_past_the_length():
    llm = Scripted("The Pilot G2 Gel Pen suits you. It is from Pilot. You write a lot. Pens help. More pens.")
    res = NarrativeGenerator(llm, prompt_version="narrative-v2").generate("endorsement", ITEM, HIST)
    assert res.text == "The Pilot G2 Gel Pen suits you. It is from Pilot. You write a lot."


def test_stream_releases_checked_sentences_and_drops_inventions():
    llm = Scripted("The Pilot G2 Gel Pen suits your desk. It comes in a 48 pack of red ink. It is from Pilot. "
                   "Extra sentence. Never shown.")
    gen = NarrativeGenerator(llm, prompt_version="narrative-v2")
    events = list(gen.stream("endorsement", ITEM, HIST))
    pieces, res = [e for e in events if isinstance(e, str)], events[-1]
    assert "".join(pieces) == res.text == "The Pilot G2 Gel Pen suits your desk. It is from Pilot. Extra sentence."
    assert "48" not in res.text and "red" not in res.text  # the invented sentence never reached the shopper
    assert res.generator == "llm+streamed+repaired" and res.report.supported and res.unsupported_before >= 1
    assert len(pieces) == 3 and res.first_piece_s is not None and res.first_token_s <= res.first_piece_s
    assert llm.closed == 1  # the model stream was closed once the requested length was reached


def test_stream_falls_back_to_the_offline_narrator():
    for llm in (Scripted("I love these, my favourite pens!"), Scripted(fail=True)):
        events = list(NarrativeGenerator(llm, prompt_version="narrative-v2").stream("endorsement", ITEM, HIST))
        res = events[-1]
        assert res.generator == "offline" and "".join(e for e in events if isinstance(e, str)) == res.text


def test_recommender_streams_the_top_narrative(tiny_catalog):
    from lumenrec.agent.recommender import Recommender, RecommenderConfig
    from lumenrec.retriever.text_retriever import TextRetriever

    llm = Scripted(*["This pen fits your desk well. It writes smoothly for you."] * 3)
    rec = Recommender(tiny_catalog, TextRetriever(tiny_catalog), config=RecommenderConfig(narrate_top=1),
                      narrator=NarrativeGenerator(llm, tiny_catalog, prompt_version="narrative-v2", streaming=True))
    events = list(rec.chat_stream("s", "I need pens"))
    reply = events[-1]
    pieces = [e for e in events[:-1] if isinstance(e, str)]
    assert "".join(pieces).strip() == reply.text.strip()
    assert reply.items[0]["why"] == "This pen fits your desk well. It writes smoothly for you."
    assert any(p == " It writes smoothly for you." for p in pieces)  # the narrative arrived in pieces
    assert len(llm.prompts) == 1 and not reply.items[1]["why"]


def test_a_generator_that_does_not_opt_in_is_not_streamed(tiny_catalog):
    from lumenrec.agent.recommender import Recommender, RecommenderConfig
    from lumenrec.retriever.text_retriever import TextRetriever

    llm = Scripted("This pen fits your desk well. It writes smoothly for you.")
    rec = Recommender(tiny_catalog, TextRetriever(tiny_catalog), config=RecommenderConfig(narrate_top=1),
                      narrator=NarrativeGenerator(llm, tiny_catalog))
    events = [e for e in rec.chat_stream("s", "I need pens") if isinstance(e, str)]
    assert any("This pen fits your desk well. It writes smoothly for you." in e for e in events)  # one piece
