"""lumenrec.polarity: the one set of negation rules, read by the critique parser and LUMEN."""

import pytest

from lumenrec import polarity as P


def _pol(text: str, mention: str, kind: str = "brand"):
    toks = P.tokenize(text)
    start = text.lower().index(mention.lower())
    i, n = P.span_tokens(toks, start, start + len(mention))
    return P.mention_polarity(toks, i, n, kind=kind)


@pytest.mark.parametrize("text, mention, expected", [
    ("not HP again", "HP", "exclude"),
    ("anything but Canon", "Canon", "exclude"),
    ("I don't want Epson", "Epson", "exclude"),           # contraction expanded: "do not want"
    ("I don't mind HP", "HP", None),                      # cancelled negation
    ("prefer Avery over Scotch", "Scotch", "exclude"),
    ("prefer Avery over Scotch", "Avery", None),
    ("switched over to a Canon now", "Canon", None),      # "over" alone is no cue
    ("the Bic pens broke", "Bic", "exclude"),             # complaint after
    ("Epson again would be nice", "Epson", "include"),
    ("HP was fine, but not Canon", "HP", None),           # the negation stays in its clause
    ("HP was fine, but not Canon", "Canon", "exclude"),
    ("no idea about Brother", "Brother", None),
    # a new wish after "and" is past the negation's reach (the simulated shopper's "no Expo and in red")
    ("no Expo this time and in red", "red", None),
    ("anything but Paper Mate and preferably blue", "blue", None),
    ("not HP and not Canon", "Canon", "exclude"),
    ("no black and no blue", "blue", "exclude"),
])
def test_mention_polarity(text, mention, expected):
    assert _pol(text, mention) == expected


def test_a_complaint_about_a_product_type_is_no_constraint():
    assert _pol("the remover is useless", "remover", kind="category") is None
    assert _pol("the Bic is useless", "Bic", kind="brand") == "exclude"


def test_tokenize_clauses_and_offsets():
    toks = P.tokenize("Not HP, but Canon's fine")
    assert [t.low for t in toks] == ["not", "hp", "but", "canon", "s", "fine"]
    assert toks[0].clause < toks[3].clause  # ',' and 'but' split clauses
    assert (toks[1].start, toks[1].end) == (4, 6)
    assert P.span_tokens(toks, 4, 6) == (1, 1)
    assert P.span_tokens(toks, 100, 104) is None


def test_parser_and_lumen_agree_on_brand_polarity():
    """The critique parser and LUMEN's brand features read the same rules."""
    from lumenrec.agent.critique import CritiqueParser
    from lumenrec.data import Catalog, Item
    from lumenrec.retriever.lumen import BrandLexicon

    cat = Catalog([Item(f"i{k}", f"{b} thing {k}", b, ["Office", "Things"]) for k, b in
                   enumerate(["Avery", "Scotch", "Canon", "Epson"])])
    parser, lex = CritiqueParser(cat), BrandLexicon([it.brand for it in cat])
    for msg in ["prefer Avery over Scotch", "not Canon, try Epson", "Epson again would be nice", "the Canon broke"]:
        c = parser.parse(msg)
        pos, neg = lex.mentions(msg)
        assert sorted(b.lower() for b in c.exclude_brands) == sorted(lex.brands[i] for i in neg), msg
        assert set(b.lower() for b in c.include_brands) <= {lex.brands[i] for i in pos}, msg
