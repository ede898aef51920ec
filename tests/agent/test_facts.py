"""Item facts a critique is checked against: colours and pack sizes from attributes, else the title."""

from lumenrec.agent.facts import colours_violate, item_colours, item_pack, preference_score
from lumenrec.agent.session import Constraints
from lumenrec.data import Catalog, Item


def test_colours_from_attributes_win_over_the_title():
    assert item_colours(Item("a", "Gel pens, Black, 12 Pack", attributes={"colour": "blue"})) == {"blue"}
    assert item_colours(Item("b", "Gel pens, Black, 12 Pack")) == {"black"}
    assert item_colours(Item("c", "Epson 69 Color Ink, Black/Cyan/Magenta/Yellow")) >= {"black", "cyan", "magenta", "yellow", "multicolor"}
    assert item_colours(Item("d", "Stapler, heavy duty")) == frozenset()
    assert item_colours(Item("e", "Grey desk tray")) == {"gray"}  # aliases


def test_only_items_whose_colours_are_all_avoided_violate():
    assert colours_violate(frozenset({"black"}), {"black"})
    assert not colours_violate(frozenset({"black", "cyan"}), {"black"})  # a colour multipack stays
    assert not colours_violate(frozenset(), {"black"})  # unknown colour is never a violation


def test_pack_sizes():
    assert item_pack(Item("a", "Pens, Blue, 12-Pack")) == 12
    assert item_pack(Item("b", "Envelopes, box of 500")) == 500
    assert item_pack(Item("c", "Labels", attributes={"pack": "30"})) == 30
    assert item_pack(Item("d", "Stapler")) is None


def test_avoided_colour_is_a_hard_filter_and_wanted_ones_score():
    cat = Catalog([Item("k", "Gel pen, Black"), Item("b", "Gel pen, Blue"), Item("m", "Gel pens, Black and Red"),
                   Item("u", "Gel pen")])
    mask = Constraints(avoid_attributes={"colour": "black"}).to_mask(cat)
    assert mask.tolist() == [False, True, True, True]
    facts = {"colours": item_colours(cat.get("b")), "pack": None}
    assert preference_score(cat.get("b"), facts, {"colour": "blue"}, set()) == 1
    assert preference_score(cat.get("b"), facts, {"colour": "red"}, set()) == 0


def test_a_wanted_measure_scores_when_the_title_states_it():
    it = Item("p", "Gel Pens, Fine Point 0.7 mm, Blue, 12 Pack")
    facts = {"colours": item_colours(it), "pack": item_pack(it)}
    assert preference_score(it, facts, {"size": "0.7 mm"}, set()) == 1
    assert preference_score(it, facts, {"size": "0.5 mm"}, set()) == 0
    assert preference_score(it, facts, {"size": "0.7 mm", "pack": "12", "colour": "blue"}, set()) == 3


def test_several_colour_words_are_one_multicolour_and_a_lone_description_colour_counts():
    # found by the simulated shopper: "assorted" avoided, "Assorted Colors" items still shown
    assorted = Item("a", "Sticky Tab Markers, Assorted Colors", "Semikolon", ["Office"])
    assert item_colours(assorted) == frozenset({"multicolor"})
    assert colours_violate(item_colours(assorted), {"assorted"}) and colours_violate(item_colours(assorted), {"multicolor"})
    # a title without colour words: the one colour its description names; several named: unknown
    labels = Item("l", "Half Sheet Shipping Labels, 200 labels", "Best", ["Office"], description="Bright white matte labels.")
    assert item_colours(labels) == frozenset({"white"}) and colours_violate(item_colours(labels), {"white"})
    mixed = Item("m", "Gel pens, 12 pack", "Pilot", ["Office"], description="Black, blue and red ink.")
    assert item_colours(mixed) == frozenset() and not colours_violate(item_colours(mixed), {"black"})
