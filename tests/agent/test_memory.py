"""'What do you know about me?': the shopper's orders and this chat, said to them."""

from lumenrec.agent.memory import chat_summary, needs_stated
from lumenrec.agent.session import Constraints, Session


class _Crit:
    def __init__(self, cats):
        self.include_categories = cats


def test_summary_speaks_to_the_shopper_from_orders_and_chat(tiny_catalog):
    s = Session(session_id="s", history=["p1", "p2", "p1"])
    s.add_turn("user", "gel pens please", "recommend")
    s.add_turn("assistant", "Here are some picks", "recommend", ["p2", "p1"])
    s.add_turn("user", "now some sticky notes", "recommend")
    s.add_turn("assistant", "Here are some picks", "recommend", ["n1"])
    s.constraints = Constraints(exclude_brands=["Bic"], avoid_attributes={"colour": "yellow"})
    s.rejected = ["n2"]
    text = chat_summary(s, tiny_catalog, lambda t: _Crit([]))
    assert text.startswith("From your past orders, you mostly buy pens")
    assert "In this chat you asked for pens and notes." in text
    assert "You ruled out Bic." in text and "yellow" in text and "You passed on 1 item" in text
    assert "this shopper" not in text.lower() and " they " not in text


def test_no_orders_and_no_chat_is_still_an_answer(tiny_catalog):
    text = chat_summary(Session(session_id="e"), tiny_catalog, lambda t: _Crit([]))
    assert "don't have any past orders" in text and "Tell me what you're shopping for" in text


def test_a_request_without_shown_items_uses_the_named_category(tiny_catalog):
    s = Session(session_id="s")
    s.add_turn("user", "ink please", "recommend")
    assert needs_stated(s, tiny_catalog, lambda t: _Crit(["Inkjet"])) == ["inkjet"]
