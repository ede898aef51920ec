"""What the agent knows about the shopper, said to them: past orders plus this conversation.

"What do you know about me?" gets an answer in the second person built from facts only:

- the order history (the session's history items): the categories and brand bought most, the latest
  purchase;
- this chat: the needs stated (the product types of the shopper's requests, or of what was shown for
  them), brands wanted and ruled out, items chosen and items passed on.

Deterministic and grounded: every name comes from the catalogue or the session. The REGEN
``user_summary`` narrative (third person, about a user, for the benchmarks) is a different thing and
stays in :mod:`lumenrec.agent.narrative`.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from lumenrec.agent.narrative import short_title
from lumenrec.agent.session import Session
from lumenrec.data.types import Catalog, Item

__all__ = ["chat_summary", "needs_stated"]


def _join(xs: Sequence[str]) -> str:
    xs = list(xs)
    if len(xs) <= 1:
        return "".join(xs)
    return ", ".join(xs[:-1]) + " and " + xs[-1]


def _kind(category: str) -> str:
    return category.lower() if category else ""


def needs_stated(session: Session, catalog: Catalog, parse) -> list[str]:
    """The product types the shopper asked for in this chat, oldest first: the category of the first
    item shown for each request, else the categories it names. `parse` is a critique parser's parse."""
    needs: list[str] = []
    turns = session.turns
    for i, t in enumerate(turns):
        if t.role != "user" or t.intent != "recommend":
            continue
        # the kind of the first item shown for the request (a leaf category: "ballpoint pens"), else
        # the categories the request names (the parser may name a parent: "writing & correction")
        reply = next((r for r in turns[i + 1:] if r.role == "assistant"), None)
        if reply and reply.item_ids and reply.item_ids[0] in catalog:
            kinds = [_kind(catalog.get(reply.item_ids[0]).category)]
        else:
            kinds = [_kind(c) for c in parse(t.text).include_categories]
        for k in kinds:
            # "printers" after "inkjet printers" (or the other way round) is the same need
            if k and not any(k in n or n in k for n in needs):
                needs.append(k)
    return needs


def chat_summary(session: Session, catalog: Catalog, parse, item=None) -> str:
    """A second-person summary of what the agent knows about the shopper (see the module docstring).
    `item(id)` gives the item to name (default ``catalog.get``; a server passes its screened display items)."""
    item = item or catalog.get
    history: list[Item] = [item(h) for h in session.history if h in catalog]
    out: list[str] = []
    if history:
        cats = [_kind(c) for c, _ in Counter(h.category for h in history if h.category).most_common(2)]
        brands = Counter(h.brand for h in history if h.brand).most_common(2)
        line = f"From your past orders, you mostly buy {_join(cats)}" if cats else "From your past orders, you buy across the shop"
        if brands and brands[0][1] >= 2:
            line += f", and you come back to {brands[0][0]} most often"
        out.append(line + f"; your latest purchase was the {short_title(history[-1])}.")
    else:
        out.append("I don't have any past orders from you, so I only know what you told me here.")
    needs = needs_stated(session, catalog, parse)
    if needs:
        out.append(f"In this chat you asked for {_join(needs[:4])}.")
    c = session.constraints
    if c.include_brands:
        out.append(f"You asked for {_join(c.include_brands)}.")
    if c.exclude_brands:
        out.append(f"You ruled out {_join(c.exclude_brands)}.")
    avoid = [v.replace(",", " or ") for v in c.avoid_attributes.values() if v]
    if avoid:
        out.append(f"You'd rather not have {_join(avoid)}.")
    if session.accepted:
        out.append(f"You chose the {_join([short_title(item(i)) for i in session.accepted[-2:] if i in catalog])}.")
    if session.rejected:
        n = len(session.rejected)
        out.append(f"You passed on {n} item{'s' if n != 1 else ''} I showed you.")
    if len(out) == 1 and not history:
        out.append("Tell me what you're shopping for and I'll remember your choices as we go.")
    return " ".join(out)
