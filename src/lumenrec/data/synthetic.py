"""A realistic synthetic office-supplies store: the offline default and the unit tests' data.

``generate(SyntheticConfig(...))`` returns a :class:`~lumenrec.data.types.Dataset` with

- a **catalogue** over a 3-level category tree ("Office & School Supplies > Writing & Correction >
  Gel Pens"), brands that specialise in some categories, per-category attributes (colour, pack,
  point size, ruling, connectivity, cartridge...), per-category log-normal prices, Amazon-like titles
  ("Pilot G2 Retractable Gel Pens, Fine Point 0.7 mm, Black Ink, 12 Count") and 1-3 sentence
  descriptions composed from the attributes;
- **interactions**: one sequence per user, unique items (as in Amazon review data, and because
  evaluation masks history items), chronological timestamps over a global time range. A user has
  latent tastes (favourite categories, brands, colour, price level); each next purchase is a
  complement of the previous one (printer -> ink of that printer's cartridge, pen -> refill of that
  pen line, stapler -> staples of that brand...), a restock of an earlier consumable (same brand and
  series, another pack or colour), a same-category upgrade, an exploration of their tastes, or noise.
  Items have a Zipf-like appeal, so popularity is skewed;
- **conversations** (REGEN style) for users whose last two items share the first two category levels:
  an opening that states the need without naming the target, a shopper-voice critique steering from
  the previous item to the target (its intended constraints are in ``meta["critique_attributes"]``),
  and narratives built only from catalogue facts (titles, brands, attributes, history).

Everything is drawn from ``numpy.random.default_rng(seed)``: the same config gives the same store,
byte for byte. ``save_store`` writes the benchmark-pair format (plus ``<Name>.time.json`` with the
timestamps) and ``conversations.jsonl`` in the regen-office-dev format.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lumenrec.data.types import Catalog, Conversation, Dataset, Interactions, Item, Narratives, Turn, UserSequence
from lumenrec.errors import ConfigError

__all__ = ["SyntheticConfig", "generate", "save_store", "KINDS", "BRANDS"]

log = logging.getLogger(__name__)


@dataclass
class SyntheticConfig:
    """How big and how structured the synthetic store is. Defaults give a store that feels like the
    Amazon Office 5-core data (about 3k items, 4k users, 10 purchases each) and builds in ~3 s of CPU."""

    seed: int = 0  # every random draw comes from default_rng(seed): same seed, same store
    num_items: int = 3000  # catalogue size; Office 2014 5-core has ~2.4k items
    num_users: int = 4000  # Office 2014 5-core has ~4.9k users
    mean_seq_len: float = 10.0  # Office 5-core averages ~10.7 interactions per user
    min_seq_len: int = 5  # like a 5-core filter: every user has at least 5 items
    max_seq_len: int = 50  # caps the geometric tail so no user dominates
    num_brands: int = 40  # brands used (the most prominent first); fewer brands = stronger brand effects
    taste_concentration: float = 0.5  # Dirichlet concentration of a user's category interests; small = focused users
    brand_loyalty: float = 1.5  # mean log-weight bonus of a user's favourite brands when choosing an item
    complement_prob: float = 0.55  # share of next purchases that complement the previous item
    restock_prob: float = 0.12  # share that restocks an earlier consumable (same brand and series)
    upgrade_prob: float = 0.06  # share that replaces the previous item by a pricier one of the same category
    noise_prob: float = 0.1  # share drawn from global popularity alone, ignoring the user
    partner_prob: float = 0.75  # share of plain complements that go to the previous item's few fixed partners
    zipf_exponent: float = 0.5  # item appeal ~ 1/rank**s inside a category: the popularity skew
    num_conversations: int = 300  # REGEN-style conversations (fewer when fewer users qualify)
    typo_rate: float = 0.12  # share of critiques with a deliberate typo (REGEN dev set: ~10%)
    start_time: int = 1546300800  # 2019-01-01 UTC: first possible purchase
    end_time: int = 1704067200  # 2024-01-01 UTC: last possible purchase

    def __post_init__(self) -> None:
        ints = ("seed", "num_items", "num_users", "min_seq_len", "max_seq_len", "num_brands",
                "num_conversations", "start_time", "end_time")
        for name in ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(name, v, "must be an integer")
        if self.seed < 0:
            raise ConfigError("seed", self.seed, "must be >= 0")
        if self.num_items < 4 * len(KINDS):
            raise ConfigError("num_items", self.num_items, f"must be >= {4 * len(KINDS)} (4 items per category)")
        if self.num_users < 1:
            raise ConfigError("num_users", self.num_users, "must be >= 1")
        if self.min_seq_len < 3:
            raise ConfigError("min_seq_len", self.min_seq_len, "must be >= 3 (leave-one-out needs 3 items)")
        if self.max_seq_len < self.min_seq_len:
            raise ConfigError("max_seq_len", self.max_seq_len, f"must be >= min_seq_len={self.min_seq_len}")
        if self.max_seq_len > self.num_items // 4:
            raise ConfigError("max_seq_len", self.max_seq_len, f"must be <= num_items/4 = {self.num_items // 4}")
        if not (self.min_seq_len <= self.mean_seq_len <= self.max_seq_len):
            raise ConfigError("mean_seq_len", self.mean_seq_len, "must lie in [min_seq_len, max_seq_len]")
        if not (len(_CORE_BRANDS) <= self.num_brands):
            raise ConfigError("num_brands", self.num_brands, f"must be >= {len(_CORE_BRANDS)} (one brand per category)")
        for name in ("taste_concentration", "zipf_exponent"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, getattr(self, name), "must be > 0")
        if self.brand_loyalty < 0:
            raise ConfigError("brand_loyalty", self.brand_loyalty, "must be >= 0")
        probs = ("complement_prob", "restock_prob", "upgrade_prob", "noise_prob", "partner_prob", "typo_rate")
        for name in probs:
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(name, getattr(self, name), "must be a probability in [0, 1]")
        total = self.complement_prob + self.restock_prob + self.upgrade_prob + self.noise_prob
        if total > 1:
            raise ConfigError("complement_prob", self.complement_prob,
                              f"complement+restock+upgrade+noise probabilities sum to {total:.2f} > 1")
        if self.num_conversations < 0:
            raise ConfigError("num_conversations", self.num_conversations, "must be >= 0")
        if self.end_time <= self.start_time + 86400 * 30:
            raise ConfigError("end_time", self.end_time, "must be at least 30 days after start_time")


# --------------------------------------------------------------------------------------------------
# The catalogue's world: categories ("kinds"), brands, product lines, compatibility series.
# --------------------------------------------------------------------------------------------------

_SUP, _ELEC = "Office & School Supplies", "Office Electronics"


@dataclass(frozen=True)
class Kind:
    """One leaf category: where it sits, how many items it gets, its prices, attributes and titles."""

    path: tuple[str, str, str]
    share: float  # relative number of items
    price: tuple[float, float]  # (median, log-sigma) of a single-pack item
    noun: tuple[str, str]  # singular, plural
    attrs: dict[str, tuple[str, ...]]
    titles: tuple[str, ...]
    unit: tuple[str, str] = ("", "")  # what `pack` counts (default: the noun); title shows "N Count" when empty
    consumable: bool = True  # bought again and again (restocks)
    series_from: str = ""  # derived kind: its items belong to series of this parent kind (ink <- printer)
    uses: tuple[str, ...] = ("everyday use at home, school or the office",)


_C = ("black", "blue", "assorted", "red", "purple", "green", "pink")

KINDS: dict[str, Kind] = {
    "gel_pen": Kind((_SUP, "Writing & Correction", "Gel Pens"), 6, (9, .5), ("gel pen", "gel pens"),
                    {"colour": _C, "point": ("0.7 mm", "0.5 mm", "1.0 mm", "0.38 mm"),
                     "mechanism": ("retractable", "capped"), "pack": ("12", "4", "8", "2", "24", "36")},
                    ("{brand} {line} {mechanism} Gel Pens, {point_t}, {colour} Ink, {pack_t}",
                     "{brand} {line} Gel Ink Pens, {mechanism}, {point_t}, {colour}, {pack}-Pack ({code})"),
                    unit=("pen", "pens"), uses=("note-taking in class and meetings", "journaling and everyday writing")),
    "ballpoint_pen": Kind((_SUP, "Writing & Correction", "Ballpoint Pens"), 6, (7, .5), ("ballpoint pen", "ballpoint pens"),
                          {"colour": ("black", "blue", "assorted", "red"), "point": ("1.0 mm", "0.7 mm", "1.6 mm"),
                           "mechanism": ("capped", "retractable"), "pack": ("12", "10", "24", "60", "4", "2")},
                          ("{brand} {line} Ballpoint Pens, {point_t}, {colour} Ink, {pack_t}",
                           "{brand} {line} {mechanism} Ball Pen, {point_t}, {colour}, Pack of {pack} ({code})"),
                          unit=("pen", "pens"), uses=("filling in forms and everyday writing", "the office supply drawer")),
    "pen_refill": Kind((_SUP, "Writing & Correction", "Pen Refills"), 3, (6, .4), ("pen refill", "pen refills"),
                       {"colour": ("black", "blue", "red"), "point": ("0.7 mm", "0.5 mm", "1.0 mm"), "pack": ("2", "3", "5", "12")},
                       ("{brand} {line} Gel Ink Refills, {point_t}, {colour} Ink, {pack_t}",
                        "{brand} Refills for {line} Pens, {point_t}, {colour}, {pack}-Pack"),
                       unit=("refill", "refills"), series_from="pen", uses=("keeping a favourite pen writing",)),
    "pencil": Kind((_SUP, "Writing & Correction", "Pencils"), 3, (6, .5), ("pencil", "pencils"),
                   {"colour": ("yellow", "black", "assorted"), "type": ("wood-cased", "mechanical"),
                    "lead": ("#2 HB", "0.7 mm", "0.5 mm"), "pack": ("12", "24", "48", "10", "96")},
                   ("{brand} {line} {type} Pencils, {lead}, {colour}, {pack_t}",
                    "{brand} {line} Pencils, {type}, {lead} Lead, {colour} Barrel, {pack} Count ({code})"),
                   uses=("tests, sketching and homework",)),
    "eraser": Kind((_SUP, "Writing & Correction", "Erasers"), 1.5, (5, .4), ("eraser", "erasers"),
                   {"colour": ("pink", "white", "black"), "material": ("vinyl", "rubber"), "pack": ("3", "4", "10", "1")},
                   ("{brand} {line} {material} Erasers, {colour}, {pack_t}",), uses=("clean corrections on paper",)),
    "highlighter": Kind((_SUP, "Writing & Correction", "Highlighters"), 3, (7, .4), ("highlighter", "highlighters"),
                        {"colour": ("yellow", "assorted", "pink", "green", "orange"), "tip": ("chisel tip", "fine tip"),
                         "pack": ("12", "5", "6", "10", "24")},
                        ("{brand} {line} Highlighters, {tip}, {colour}, {pack_t}",
                         "{brand} {line} Highlighter Markers, {tip}, {colour}, {pack}-Pack ({code})"),
                        uses=("studying and marking up documents",)),
    "marker": Kind((_SUP, "Writing & Correction", "Permanent Markers"), 3, (9, .5), ("permanent marker", "permanent markers"),
                   {"colour": ("black", "assorted", "red", "blue"), "tip": ("fine point", "ultra fine point", "chisel tip"),
                    "pack": ("12", "2", "5", "24", "36")},
                   ("{brand} {line} Permanent Markers, {tip}, {colour}, {pack_t}",), uses=("labeling boxes, bins and crafts",)),
    "dry_erase": Kind((_SUP, "Writing & Correction", "Dry Erase Markers"), 2.5, (10, .4), ("dry erase marker", "dry erase markers"),
                      {"colour": ("assorted", "black", "blue", "red"), "tip": ("chisel tip", "fine tip"),
                       "odor": ("low odor", "standard"), "pack": ("4", "8", "12", "16")},
                      ("{brand} {line} {odor} Dry Erase Markers, {tip}, {colour}, {pack_t}",), uses=("whiteboards in classrooms and meeting rooms",)),
    "correction": Kind((_SUP, "Writing & Correction", "Correction Tape"), 1.5, (6, .4), ("correction tape", "correction tapes"),
                       {"colour": ("white",), "width": ("5 mm", "4.2 mm"), "length": ("6.5 m", "10 m"), "pack": ("2", "4", "6", "10")},
                       ("{brand} {line} Correction Tape, {width} x {length}, White, {pack_t}",), unit=("roller", "rollers"),
                       uses=("fixing mistakes without the mess of fluid",)),
    "copy_paper": Kind((_SUP, "Paper", "Copy & Printer Paper"), 4, (30, .5), ("copy paper", "copy paper"),
                       {"colour": ("white",), "size": ("8.5 x 11 in", "8.5 x 14 in", "A4"), "weight": ("20 lb", "24 lb", "28 lb", "32 lb"),
                        "brightness": ("92 bright", "96 bright", "98 bright"), "pack": ("1", "3", "5", "10")},
                       ("{brand} {line} Copy Paper, {size}, {weight}, {brightness}, White, {pack_t}",
                        "{brand} {line} Printer Paper, {size}, {weight}, {brightness}, White, {pack_t}"),
                       unit=("ream", "reams"), uses=("printing, copying and faxing",)),
    "notebook": Kind((_SUP, "Paper", "Notebooks"), 5, (8, .6), ("notebook", "notebooks"),
                     {"colour": ("black", "blue", "assorted", "red", "green", "purple"),
                      "ruling": ("college ruled", "wide ruled", "dot grid", "graph ruled"),
                      "size": ("8.5 x 11 in", "5 x 8 in", "A5", "9.75 x 7.5 in"), "sheets": ("70 sheets", "100 sheets", "120 sheets", "200 sheets"),
                      "binding": ("spiral", "hardcover", "composition"), "pack": ("1", "3", "5", "6", "12")},
                     ("{brand} {line} {binding} Notebook, {ruling}, {size}, {sheets}, {colour}, {pack_t}",
                      "{brand} {line} {binding} Notebooks, {ruling}, {sheets}, {size}, {colour} Cover, {pack}-Pack"),
                     uses=("class notes and meeting notes", "journaling and planning")),
    "sticky_notes": Kind((_SUP, "Paper", "Sticky Notes"), 4, (10, .5), ("sticky note", "sticky notes"),
                         {"colour": ("canary yellow", "assorted", "neon", "pastel"), "size": ("3 x 3 in", "1.5 x 2 in", "4 x 6 in", "3 x 5 in"),
                          "pack": ("12", "24", "5", "6", "18")},
                         ("{brand} {line} Sticky Notes, {size}, {colour}, {pack_t}",
                          "{brand} {line} Notes, {size}, {colour}, {pack} Pads/Pack ({code})"),
                         unit=("pad", "pads"), uses=("reminders on monitors and desks",)),
    "index_cards": Kind((_SUP, "Paper", "Index Cards"), 2, (6, .4), ("index card", "index cards"),
                        {"colour": ("white", "assorted"), "ruling": ("ruled", "blank", "grid"), "size": ("3 x 5 in", "4 x 6 in"),
                         "pack": ("100", "300", "500")},
                        ("{brand} {line} Index Cards, {ruling}, {size}, {colour}, {pack_t}",), unit=("card", "cards"),
                        uses=("flash cards and quick notes",)),
    "binder": Kind((_SUP, "Filing & Organization", "Binders"), 3, (9, .5), ("binder", "binders"),
                   {"colour": ("black", "white", "blue", "assorted", "red"), "ring": ("1 in", "1.5 in", "2 in", "3 in", "0.5 in"),
                    "ring_type": ("D-ring", "round ring", "slant-D ring"), "pack": ("1", "2", "4", "6", "12")},
                   ("{brand} {line} {ring} {ring_type} View Binder, {colour}, {pack_t}",
                    "{brand} {line} 3-Ring Binders, {ring} {ring_type}, {colour}, {pack}-Pack ({code})"),
                   uses=("keeping papers and handouts in order",)),
    "folder": Kind((_SUP, "Filing & Organization", "File Folders"), 3, (15, .5), ("file folder", "file folders"),
                   {"colour": ("manila", "assorted", "blue", "red", "green"), "size": ("letter", "legal"),
                    "tab": ("1/3-cut tab", "1/5-cut tab", "straight cut"), "pack": ("100", "24", "50", "36")},
                   ("{brand} {line} File Folders, {size} Size, {tab}, {colour}, {pack_t}",), unit=("folder", "folders"),
                   uses=("filing cabinets and records",)),
    "sheet_protector": Kind((_SUP, "Filing & Organization", "Sheet Protectors"), 1.5, (11, .4), ("sheet protector", "sheet protectors"),
                            {"finish": ("clear", "non-glare"), "thickness": ("standard weight", "heavy weight"), "pack": ("50", "100", "200")},
                            ("{brand} {line} Sheet Protectors, {finish}, {thickness}, {pack_t}",), uses=("binders and presentations",)),
    "desk_organizer": Kind((_SUP, "Filing & Organization", "Desk Organizers"), 2.5, (22, .5), ("desk organizer", "desk organizers"),
                           {"colour": ("black", "silver", "white", "natural", "rose gold"),
                            "material": ("mesh metal", "bamboo", "acrylic", "plastic", "wood"),
                            "compartments": ("3 compartments", "5 compartments", "6 compartments", "8 compartments"), "pack": ("1",)},
                           ("{brand} {line} {material} Desk Organizer, {compartments}, {colour}",), consumable=False,
                           uses=("a tidy desk",)),
    "stapler": Kind((_SUP, "Desk Supplies", "Staplers"), 2, (15, .6), ("stapler", "staplers"),
                    {"colour": ("black", "blue", "red", "silver", "gray"), "type": ("desktop", "heavy duty", "electric", "mini"),
                     "capacity": ("20 sheets", "25 sheets", "40 sheets", "100 sheets"), "pack": ("1",)},
                    ("{brand} {line} {type} Stapler, {capacity} Capacity, {colour}",), consumable=False,
                    uses=("stapling reports and handouts",)),
    "staples": Kind((_SUP, "Desk Supplies", "Staples"), 2, (6, .5), ("box of staples", "staples"),
                    {"size": ("standard 1/4 in", "heavy duty 3/8 in", "chisel point"), "pack": ("5000", "1000", "25000", "2500")},
                    ("{brand} {line} Staples, {size}, {pack_t}",), unit=("staple", "staples"), uses=("refilling a stapler",)),
    "tape": Kind((_SUP, "Desk Supplies", "Tape"), 2.5, (9, .5), ("roll of tape", "tape rolls"),
                 {"type": ("invisible", "packing", "masking", "double-sided"), "width": ("3/4 in", "1.88 in", "1/2 in"),
                  "pack": ("6", "3", "12", "2", "1")},
                 ("{brand} {line} {type} Tape, {width} Wide, {pack_t}",), unit=("roll", "rolls"), uses=("wrapping, mending and packing",)),
    "scissors": Kind((_SUP, "Desk Supplies", "Scissors"), 1.5, (9, .4), ("pair of scissors", "scissors"),
                     {"colour": ("black", "blue", "assorted", "red"), "size": ("8 in", "7 in", "5 in"),
                      "blade": ("stainless steel", "titanium bonded"), "pack": ("1", "2", "3")},
                     ("{brand} {line} {blade} Scissors, {size}, {colour} Handle, {pack_t}",), consumable=False,
                     uses=("cutting paper, cardboard and fabric",)),
    "envelope": Kind((_SUP, "Mailing & Labels", "Envelopes"), 2.5, (14, .5), ("envelope", "envelopes"),
                     {"colour": ("white", "kraft"), "size": ("#10", "6 x 9 in", "9 x 12 in", "A7"),
                      "closure": ("peel and seal", "gummed", "self-seal"), "pack": ("100", "500", "50", "250")},
                     ("{brand} {line} {size} Envelopes, {closure}, {colour}, {pack_t}",), unit=("envelope", "envelopes"),
                     uses=("mailing letters and invoices",)),
    "labels": Kind((_SUP, "Mailing & Labels", "Address Labels"), 2.5, (14, .5), ("address label", "address labels"),
                   {"colour": ("white", "clear"), "size": ("1 x 2-5/8 in", "2 x 4 in", "3-1/3 x 4 in"),
                    "printer": ("laser", "inkjet", "laser and inkjet"), "pack": ("750", "3000", "300", "1500")},
                   ("{brand} {line} Address Labels for {printer} Printers, {size}, {colour}, {pack_t}",), unit=("label", "labels"),
                   uses=("mailing and shipping",)),
    "label_tape": Kind((_SUP, "Mailing & Labels", "Label Maker Tape"), 1.5, (14, .4), ("label tape", "label tapes"),
                       {"colour": ("black on white", "black on clear", "white on black"), "width": ("12 mm", "18 mm", "9 mm", "24 mm"),
                        "pack": ("1", "2", "4")},
                       ("{brand} {tape} Label Tape, {width}, {colour}, {pack_t}",), unit=("cassette", "cassettes"),
                       series_from="label_maker", uses=("a label maker",)),
    "ink": Kind((_SUP, "Ink & Toner", "Ink Cartridges"), 4, (30, .35), ("ink cartridge", "ink cartridges"),
                {"colour": ("black", "tri-color", "black and tri-color combo", "color 3-pack"),
                 "yield": ("standard yield", "high yield"), "pack": ("1", "2")},
                ("{series}{xl} {colour} Ink Cartridge, {yield}, {pack_t}",
                 "{series}{xl} Ink Cartridge, {colour}, {yield}, Works with {brand} Printers, {pack_t}"),
                unit=("cartridge", "cartridges"), series_from="inkjet_printer", uses=("a home or office inkjet printer",)),
    "toner": Kind((_SUP, "Ink & Toner", "Toner Cartridges"), 2, (70, .35), ("toner cartridge", "toner cartridges"),
                  {"colour": ("black", "cyan", "magenta", "yellow"), "yield": ("standard yield", "high yield"), "pack": ("1", "2")},
                  ("{series}{xl} {colour} Toner Cartridge, {yield}, {pack_t}",), unit=("cartridge", "cartridges"),
                  series_from="laser_printer", uses=("a laser printer",)),
    "inkjet_printer": Kind((_ELEC, "Printers", "Inkjet Printers"), 2, (110, .5), ("inkjet printer", "inkjet printers"),
                           {"colour": ("white", "black"), "type": ("all-in-one", "single-function", "photo"),
                            "connectivity": ("wireless", "USB", "wireless and Ethernet"), "pack": ("1",)},
                           ("{brand} {line} {type} Inkjet Printer, {connectivity}, Color Printing, {colour}",
                            "{brand} {line} Wireless {type} Color Inkjet Printer, {colour} ({code})"),
                           consumable=False, uses=("printing at home", "a small office")),
    "laser_printer": Kind((_ELEC, "Printers", "Laser Printers"), 1.5, (200, .5), ("laser printer", "laser printers"),
                          {"colour": ("white", "black", "gray"), "type": ("monochrome", "color"),
                           "connectivity": ("wireless", "USB", "wireless and Ethernet"), "duplex": ("auto duplex", "manual duplex"),
                           "pack": ("1",)},
                          ("{brand} {line} {type} Laser Printer, {connectivity}, {duplex}, {colour}",), consumable=False,
                          uses=("high-volume office printing",)),
    "mouse": Kind((_ELEC, "Computer Accessories", "Mice"), 2.5, (20, .6), ("mouse", "mice"),
                  {"colour": ("black", "gray", "white", "blue", "pink"), "connectivity": ("wireless", "Bluetooth", "USB wired"),
                   "size": ("full-size", "compact", "ergonomic"), "pack": ("1",)},
                  ("{brand} {line} {connectivity} Mouse, {size}, {colour}",), consumable=False, uses=("a laptop or desktop computer",)),
    "keyboard": Kind((_ELEC, "Computer Accessories", "Keyboards"), 2, (35, .6), ("keyboard", "keyboards"),
                     {"colour": ("black", "white", "gray"), "connectivity": ("wireless", "Bluetooth", "USB wired"),
                      "layout": ("full-size", "compact", "ergonomic split"), "pack": ("1",)},
                     ("{brand} {line} {connectivity} Keyboard, {layout}, {colour}",), consumable=False,
                     uses=("typing at a home or office desk",)),
    "mouse_pad": Kind((_ELEC, "Computer Accessories", "Mouse Pads"), 1.5, (10, .5), ("mouse pad", "mouse pads"),
                      {"colour": ("black", "gray", "blue", "pink"), "material": ("cloth", "gel wrist rest", "hard plastic"),
                       "size": ("standard 9 x 7 in", "large 11 x 9 in", "extended 31 x 12 in"), "pack": ("1",)},
                      ("{brand} {line} Mouse Pad, {material}, {size}, {colour}",), consumable=False, uses=("smooth mouse tracking",)),
    "sci_calc": Kind((_ELEC, "Calculators", "Scientific Calculators"), 1.5, (18, .6), ("scientific calculator", "scientific calculators"),
                     {"colour": ("black", "blue", "pink", "silver"), "display": ("2-line", "4-line", "natural textbook"),
                      "power": ("solar and battery", "battery"), "pack": ("1",)},
                     ("{brand} {line} Scientific Calculator, {display} Display, {power} Powered, {colour}",), consumable=False,
                     uses=("math and science classes",)),
    "basic_calc": Kind((_ELEC, "Calculators", "Basic Calculators"), 1.2, (10, .5), ("basic calculator", "basic calculators"),
                       {"colour": ("black", "silver", "white", "pink"), "display": ("8-digit", "10-digit", "12-digit"),
                        "power": ("solar and battery", "battery"), "pack": ("1",)},
                       ("{brand} {line} Desktop Calculator, {display} Display, {power} Powered, {colour}",), consumable=False,
                       uses=("bookkeeping and everyday sums",)),
    "shredder": Kind((_ELEC, "Shredders & Label Makers", "Paper Shredders"), 1.5, (90, .5), ("paper shredder", "paper shredders"),
                     {"colour": ("black", "silver"), "capacity": ("8 sheets", "12 sheets", "16 sheets"),
                      "cut": ("cross-cut", "micro-cut", "strip-cut"), "bin": ("4 gallon", "6 gallon", "9 gallon"), "pack": ("1",)},
                     ("{brand} {line} {capacity} {cut} Paper Shredder, {bin} Bin, {colour}",), consumable=False,
                     uses=("shredding bills and old records",)),
    "shredder_supply": Kind((_ELEC, "Shredders & Label Makers", "Shredder Bags & Oil"), 1, (12, .4), ("shredder supply", "shredder supplies"),
                            {"type": ("lubricant sheets", "oil", "waste bags"), "pack": ("12", "24", "50", "1")},
                            ("{brand} {line} Shredder {type}, {pack_t}",), uses=("keeping a shredder running",)),
    "label_maker": Kind((_ELEC, "Shredders & Label Makers", "Label Makers"), 1, (35, .5), ("label maker", "label makers"),
                        {"colour": ("black", "white", "gray"), "style": ("handheld", "Bluetooth", "PC-connectable"), "pack": ("1",)},
                        ("{brand} {line} {style} Label Maker, {colour}",), consumable=False, uses=("labeling files, shelves and cables",)),
}

# Brands in order of prominence, each with the categories it sells and a price factor.
BRANDS: list[tuple[str, tuple[str, ...], float]] = [
    ("AmazonBasics", ("copy_paper", "notebook", "sticky_notes", "binder", "folder", "sheet_protector", "desk_organizer", "stapler",
                      "tape", "envelope", "labels", "mouse", "keyboard", "mouse_pad", "shredder", "shredder_supply", "marker",
                      "dry_erase"), 0.75),
    ("HP", ("inkjet_printer", "laser_printer", "copy_paper"), 1.15),
    ("Pilot", ("gel_pen", "ballpoint_pen", "highlighter"), 1.1),
    ("BIC", ("ballpoint_pen", "gel_pen", "pencil", "marker", "correction"), 0.8),
    ("Sharpie", ("marker", "highlighter", "gel_pen"), 1.0),
    ("Post-it", ("sticky_notes",), 1.2),
    ("Avery", ("labels", "binder", "sheet_protector", "highlighter"), 1.0),
    ("Paper Mate", ("ballpoint_pen", "gel_pen", "pencil", "correction", "eraser"), 0.9),
    ("Canon", ("inkjet_printer", "laser_printer", "sci_calc"), 1.1),
    ("Epson", ("inkjet_printer",), 1.1),
    ("Brother", ("laser_printer", "inkjet_printer", "label_maker"), 1.0),
    ("Five Star", ("notebook", "binder", "folder", "index_cards"), 1.1),
    ("Mead", ("notebook", "index_cards", "envelope"), 0.9),
    ("Scotch", ("tape", "scissors"), 1.0),
    ("Logitech", ("mouse", "keyboard", "mouse_pad"), 1.1),
    ("Expo", ("dry_erase",), 1.0),
    ("Swingline", ("stapler", "staples"), 1.0),
    ("Fellowes", ("shredder", "shredder_supply", "mouse_pad", "desk_organizer"), 1.0),
    ("uni-ball", ("gel_pen", "ballpoint_pen"), 1.1),
    ("Zebra", ("gel_pen", "ballpoint_pen", "highlighter"), 1.0),
    ("Pentel", ("gel_pen", "pencil", "eraser", "correction", "highlighter"), 1.0),
    ("Texas Instruments", ("sci_calc", "basic_calc"), 1.4),
    ("Casio", ("sci_calc", "basic_calc"), 0.9),
    ("Ticonderoga", ("pencil",), 1.0),
    ("Hammermill", ("copy_paper",), 1.0),
    ("Smead", ("folder",), 1.0),
    ("Dymo", ("label_maker",), 1.0),
    ("Bostitch", ("stapler", "staples", "desk_organizer"), 0.95),
    ("Moleskine", ("notebook",), 2.2),
    ("Westcott", ("scissors",), 0.9),
    ("Microsoft", ("mouse", "keyboard"), 1.25),
    ("Quality Park", ("envelope",), 1.0),
    ("Oxford", ("index_cards", "folder", "notebook"), 0.9),
    ("Staedtler", ("pencil", "eraser"), 1.1),
    ("Cardinal", ("binder", "sheet_protector"), 1.0),
    ("Fiskars", ("scissors",), 1.15),
    ("Quartet", ("dry_erase",), 1.0),
    ("Duck", ("tape",), 0.9),
    ("Sharp", ("basic_calc", "sci_calc"), 0.9),
    ("Pendaflex", ("folder",), 1.0),
    ("Tombow", ("correction", "eraser"), 1.2),
    ("Officemate", ("desk_organizer",), 0.9),
    ("Bonsaii", ("shredder", "shredder_supply"), 0.8),
]

# The brands that must stay when num_brands is small, so that every non-derived kind keeps a seller.
_CORE_BRANDS = ("AmazonBasics", "HP", "Pilot", "BIC", "Post-it", "Avery", "Paper Mate", "Brother", "Five Star", "Scotch",
                "Swingline", "Pentel", "Casio", "Ticonderoga", "Hammermill")

# Product lines (or printer families) by brand and kind; anything else uses _GENERIC_LINES.
_LINES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Pilot", "gel_pen"): ("G2", "G-Knock", "Precise Gel", "FriXion"), ("Pilot", "ballpoint_pen"): ("EasyTouch", "Acroball", "BetterBall"),
    ("Pilot", "highlighter"): ("FriXion Light", "SpotLiter"), ("BIC", "ballpoint_pen"): ("Round Stic", "Cristal", "Atlantis", "Clic Stic"),
    ("BIC", "gel_pen"): ("Gel-ocity", "Gelocity Quick Dry"), ("BIC", "pencil"): ("Xtra Smooth", "Velocity"),
    ("BIC", "marker"): ("Intensity", "Mark-it"), ("BIC", "correction"): ("Wite-Out EZ Correct", "Wite-Out Mini"),
    ("uni-ball", "gel_pen"): ("Signo 207", "Vision", "One"), ("uni-ball", "ballpoint_pen"): ("Jetstream", "Lakubo"),
    ("Zebra", "gel_pen"): ("Sarasa Clip", "Sarasa Dry"), ("Zebra", "ballpoint_pen"): ("F-301", "Z-Grip"), ("Zebra", "highlighter"): ("Mildliner", "Zebrite"),
    ("Pentel", "gel_pen"): ("EnerGel", "EnerGel-X"), ("Pentel", "pencil"): ("Twist-Erase", "GraphGear"), ("Pentel", "eraser"): ("Hi-Polymer", "Clic"),
    ("Pentel", "correction"): ("Presto", "Correction Pen"), ("Pentel", "highlighter"): ("Handy-line",),
    ("Paper Mate", "ballpoint_pen"): ("InkJoy", "Write Bros", "Profile"), ("Paper Mate", "gel_pen"): ("InkJoy Gel", "Flair Gel"),
    ("Paper Mate", "pencil"): ("Mirado Black Warrior", "Clearpoint"), ("Paper Mate", "correction"): ("Liquid Paper DryLine",),
    ("Paper Mate", "eraser"): ("Pink Pearl", "Arrowhead"), ("Sharpie", "marker"): ("Fine Point", "Ultra Fine", "King Size"),
    ("Sharpie", "highlighter"): ("Clear View", "Accent Tank"), ("Sharpie", "gel_pen"): ("S-Gel",),
    ("Expo", "dry_erase"): ("Low Odor", "Vis-a-Vis", "Ultra Fine"), ("Ticonderoga", "pencil"): ("Classic", "Noir", "Renew"),
    ("Five Star", "notebook"): ("Advance", "Flex", "Wirebound"), ("Mead", "notebook"): ("Spiral", "Composition", "Cambridge"),
    ("Moleskine", "notebook"): ("Classic", "Cahier", "Volant"), ("Post-it", "sticky_notes"): ("Super Sticky", "Original", "Greener Notes"),
    ("Avery", "labels"): ("Easy Peel", "TrueBlock"), ("Avery", "binder"): ("Heavy-Duty", "Durable", "EZD"),
    ("HP", "inkjet_printer"): ("DeskJet", "ENVY", "OfficeJet"), ("HP", "laser_printer"): ("LaserJet Pro", "Color LaserJet Pro"),
    ("HP", "copy_paper"): ("Printer Paper", "Premium32"), ("Canon", "inkjet_printer"): ("PIXMA",), ("Canon", "laser_printer"): ("imageCLASS",),
    ("Epson", "inkjet_printer"): ("Expression", "WorkForce", "EcoTank"), ("Brother", "inkjet_printer"): ("MFC-J", "INKvestment"),
    ("Brother", "laser_printer"): ("HL-L", "MFC-L"), ("Brother", "label_maker"): ("P-touch",), ("Dymo", "label_maker"): ("LabelManager", "LetraTag"),
    ("Logitech", "mouse"): ("M185", "MX Master", "Pebble"), ("Logitech", "keyboard"): ("K270", "MX Keys", "K380"),
    ("Microsoft", "mouse"): ("Arc", "Modern Mobile", "Basic Optical"), ("Microsoft", "keyboard"): ("Sculpt", "Wired 600"),
    ("Texas Instruments", "sci_calc"): ("TI-30XS", "TI-36X Pro", "TI-30Xa"), ("Casio", "sci_calc"): ("fx-115ES Plus", "fx-300ES Plus"),
    ("Swingline", "stapler"): ("Optima", "Commercial", "Tot"), ("Scotch", "tape"): ("Magic", "Heavy Duty Shipping", "Expressions"),
    ("Fellowes", "shredder"): ("Powershred", "AutoMax"), ("Westcott", "scissors"): ("Titanium Bonded", "Straight"),
    ("Hammermill", "copy_paper"): ("Copy Plus", "Fore Multipurpose", "Premium Color Copy"),
}
_GENERIC_LINES = ("Essentials", "Classic", "Everyday", "Pro", "Comfort", "Ultra", "Premium", "Smooth", "Studio", "Select",
                  "Value", "Signature", "Elite", "Basics")

# Compatibility series of the derived kinds, by brand (ink/toner cartridges, label tape systems).
_INK_SERIES = {"HP": ("HP 63", "HP 64", "HP 65", "HP 67", "HP 902", "HP 910", "HP 952", "HP 962"),
               "Canon": ("Canon PG-245", "Canon PG-243", "Canon PG-260", "Canon PGI-280"),
               "Epson": ("Epson 212", "Epson 252", "Epson 288", "Epson 702"),
               "Brother": ("Brother LC3011", "Brother LC3013", "Brother LC401")}
_TONER_SERIES = {"HP": ("HP 26A", "HP 30A", "HP 58A", "HP 202A", "HP 206A"), "Brother": ("Brother TN-760", "Brother TN-730", "Brother TN-227"),
                 "Canon": ("Canon 057", "Canon 054", "Canon 137")}
_TAPE_SERIES = {"Brother": ("TZe", "HGe"), "Dymo": ("D1", "LetraTag")}
_REFILL_BRANDS = ("Pilot", "uni-ball", "Zebra", "Pentel", "Paper Mate")

# Complementary next purchases: from-kind -> [(to-kind, weight, match)]. match "series": same
# compatibility series (printer -> its cartridges; pen -> its line's refills); "brand": same brand
# (falls back to any brand); "owned": a series of something the user owns; "": any item.
_COMPLEMENTS: dict[str, tuple[tuple[str, float, str], ...]] = {
    "inkjet_printer": (("ink", 6, "series"), ("copy_paper", 2, ""), ("labels", 0.5, "")),
    "laser_printer": (("toner", 6, "series"), ("copy_paper", 2, "")),
    "ink": (("ink", 3, "series"), ("copy_paper", 1.5, ""), ("labels", 0.5, "")),
    "toner": (("toner", 2, "series"), ("copy_paper", 2, "")),
    "copy_paper": (("ink", 2, "owned"), ("toner", 1, "owned"), ("envelope", 1, ""), ("folder", 1, "")),
    "gel_pen": (("pen_refill", 4, "series"), ("notebook", 2, ""), ("highlighter", 1, ""), ("gel_pen", 1, "brand")),
    "ballpoint_pen": (("pen_refill", 3, "series"), ("notebook", 2, ""), ("sticky_notes", 1, "")),
    "pen_refill": (("pen_refill", 2, "series"), ("notebook", 1, ""), ("gel_pen", 1, "brand")),
    "pencil": (("eraser", 3, ""), ("notebook", 2, ""), ("index_cards", 1, "")),
    "eraser": (("pencil", 2, "brand"), ("notebook", 1, "")),
    "highlighter": (("sticky_notes", 2, ""), ("index_cards", 2, ""), ("highlighter", 1, "brand")),
    "marker": (("marker", 1, "brand"), ("tape", 2, ""), ("labels", 1, "")),
    "dry_erase": (("dry_erase", 2, "brand"), ("sticky_notes", 1, "")),
    "correction": (("ballpoint_pen", 2, "brand"), ("notebook", 1, "")),
    "notebook": (("gel_pen", 2, ""), ("highlighter", 2, ""), ("notebook", 1, "brand"), ("sticky_notes", 1, ""), ("binder", 1, "")),
    "sticky_notes": (("highlighter", 2, ""), ("index_cards", 1, ""), ("sticky_notes", 1, "brand")),
    "index_cards": (("highlighter", 2, ""), ("sticky_notes", 1, "")),
    "binder": (("sheet_protector", 3, ""), ("folder", 1, ""), ("labels", 1, "")),
    "folder": (("labels", 2, ""), ("binder", 1, ""), ("folder", 1, "brand")),
    "sheet_protector": (("binder", 2, ""),),
    "desk_organizer": (("stapler", 1, ""), ("scissors", 1, ""), ("sticky_notes", 1, "")),
    "stapler": (("staples", 5, "brand"), ("tape", 1, ""), ("scissors", 1, "")),
    "staples": (("staples", 2, "brand"),),
    "tape": (("scissors", 2, ""), ("tape", 1, "brand"), ("envelope", 1, "")),
    "scissors": (("tape", 2, ""),),
    "envelope": (("labels", 2, ""), ("tape", 1, ""), ("envelope", 1, "brand")),
    "labels": (("envelope", 2, ""), ("label_maker", 1, "")),
    "label_maker": (("label_tape", 6, "series"), ("labels", 1, "")),
    "label_tape": (("label_tape", 3, "series"),),
    "shredder": (("shredder_supply", 5, "brand"), ("copy_paper", 1, "")),
    "shredder_supply": (("shredder_supply", 2, "brand"),),
    "mouse": (("mouse_pad", 3, ""), ("keyboard", 3, "brand")),
    "keyboard": (("mouse", 3, "brand"), ("mouse_pad", 1, "")),
    "mouse_pad": (("keyboard", 1, ""), ("mouse", 1, "")),
    "sci_calc": (("pencil", 2, ""), ("notebook", 2, "")),
    "basic_calc": (("pencil", 1, ""), ("copy_paper", 1, ""), ("envelope", 1, "")),
}

_POINT_LABEL = {"0.38 mm": "Ultra Fine Point 0.38 mm", "0.5 mm": "Extra Fine Point 0.5 mm", "0.7 mm": "Fine Point 0.7 mm",
                "1.0 mm": "Medium Point 1.0 mm", "1.6 mm": "Bold Point 1.6 mm"}
_SMALL_WORDS = {"x", "in", "mm", "lb", "m", "on", "and", "of"}


def _title_case(v: str) -> str:
    """'college ruled' -> 'College Ruled', keeping units ('8.5 x 11 in') and codes as they are."""
    return " ".join(w[0].upper() + w[1:] if (w[:1].isalpha() and w[:1].islower() and w not in _SMALL_WORDS) else w
                    for w in v.split(" "))


def _a(phrase: str) -> str:
    """The phrase with its indefinite article: 'an inkjet printer', 'a pack'."""
    return ("an " if phrase[:1].lower() in "aeio" else "a ") + phrase


_ZIPF_CDF: dict[tuple[int, float], np.ndarray] = {}


def _zipf_pick(rng: np.random.Generator, values: tuple[str, ...] | list[str], s: float = 0.8) -> str:
    """One value, earlier values more likely (the first of a list is the most common)."""
    key = (len(values), s)
    if key not in _ZIPF_CDF:
        w = 1.0 / np.arange(1, len(values) + 1) ** s
        _ZIPF_CDF[key] = np.cumsum(w / w.sum())
    cdf = _ZIPF_CDF[key]
    return values[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(values) - 1)]


# --------------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------------


@dataclass
class _World:
    """The catalogue plus the hidden structure the user simulator needs (not saved)."""

    items: list[Item]
    kind: np.ndarray  # (N,) kind index
    series: list[str]  # compatibility series ("" when none)
    appeal: np.ndarray  # (N,) Zipf-like appeal inside its kind
    price_pct: np.ndarray  # (N,) price percentile inside its kind, in [0, 1]
    brand_idx: np.ndarray  # (N,) brand index into `brands`
    colour: list[str]
    brands: list[str]
    kind_names: list[str]
    by_kind: list[np.ndarray] = field(default_factory=list)


def _pick_brands(cfg: SyntheticConfig) -> list[tuple[str, tuple[str, ...], float]]:
    keep = {b for b, _, _ in BRANDS[: cfg.num_brands]} | set(_CORE_BRANDS)
    return [b for b in BRANDS if b[0] in keep]


def _build_items(cfg: SyntheticConfig, rng: np.random.Generator) -> _World:
    brands = _pick_brands(cfg)
    brand_names = [b for b, _, _ in brands]
    premium = {b: f for b, _, f in brands}
    sellers: dict[str, list[str]] = {k: [] for k in KINDS}
    for b, kinds, _ in brands:
        for k in kinds:
            sellers[k].append(b)
    kind_names = list(KINDS)
    shares = np.array([KINDS[k].share for k in kind_names])
    counts = np.maximum(4, np.floor(shares / shares.sum() * cfg.num_items)).astype(int)
    # hand out the rounding remainder to the largest kinds, deterministically
    order = np.argsort(-shares, kind="stable")
    i = 0
    while counts.sum() < cfg.num_items:
        counts[order[i % len(order)]] += 1
        i += 1
    while counts.sum() > cfg.num_items:
        j = order[i % len(order)]
        if counts[j] > 4:
            counts[j] -= 1
        i += 1

    recs: list[dict[str, Any]] = []  # one per item, before ids are given
    series_pool: dict[str, list[tuple[str, str, str]]] = {"pen": [], "inkjet_printer": [], "laser_printer": [], "label_maker": []}
    titles_seen: set[str] = set()
    # derived kinds (cartridges, refills, label tape) last: they need their parents' series
    gen_order = sorted(range(len(kind_names)), key=lambda i: (bool(KINDS[kind_names[i]].series_from), i))
    for k_idx in gen_order:
        k = kind_names[k_idx]
        kind = KINDS[k]
        for _ in range(int(counts[k_idx])):
            rec = _make_item(k, kind, sellers, premium, series_pool, rng, titles_seen)
            rec["kind"] = k_idx
            recs.append(rec)
            if k in ("gel_pen", "ballpoint_pen") and rec["brand"] in _REFILL_BRANDS:
                series_pool["pen"].append((rec["brand"], rec["series"], rec["attributes"]["point"]))
            elif k in series_pool:
                series_pool[k].append((rec["brand"], rec["series"], ""))

    # Ids in a shuffled order (as in real data, ids say nothing about the category).
    perm = rng.permutation(len(recs))
    recs = [recs[p] for p in perm]
    n = len(recs)
    kind_arr = np.array([r["kind"] for r in recs], dtype=np.int64)
    appeal = np.zeros(n)
    price_pct = np.zeros(n)
    prices = np.array([r["price"] for r in recs])
    by_kind = []
    for k_idx in range(len(kind_names)):
        idx = np.nonzero(kind_arr == k_idx)[0]
        by_kind.append(idx)
        ranks = rng.permutation(len(idx))
        appeal[idx] = 1.0 / (ranks + 1.0) ** cfg.zipf_exponent
        order_p = np.argsort(np.argsort(prices[idx], kind="stable"), kind="stable")
        price_pct[idx] = order_p / max(1, len(idx) - 1)
    items = [Item(id=str(i), title=r["title"], brand=r["brand"], categories=list(KINDS[kind_names[r["kind"]]].path),
                  description=r["description"], price=r["price"], attributes=r["attributes"]) for i, r in enumerate(recs)]
    return _World(items=items, kind=kind_arr, series=[r["series"] for r in recs], appeal=appeal, price_pct=price_pct,
                  brand_idx=np.array([brand_names.index(r["brand"]) for r in recs]), colour=[r["attributes"].get("colour", "") for r in recs],
                  brands=brand_names, kind_names=kind_names, by_kind=by_kind)


def _make_item(k: str, kind: Kind, sellers: dict[str, list[str]], premium: dict[str, float],
               series_pool: dict[str, list[tuple[str, str, str]]], rng: np.random.Generator, titles_seen: set[str]) -> dict[str, Any]:
    """One item record of kind `k`: brand, line, attributes, price, title, description."""
    for attempt in range(20):
        attrs = {a: _zipf_pick(rng, vals) for a, vals in kind.attrs.items()}
        series, xl = "", ""
        if kind.series_from:
            pool = series_pool.get(kind.series_from, [])
            if not pool:  # no parent item (cannot happen with >= 4 items per kind): a series-less item
                pool = [((sellers.get(kind.series_from) or ["AmazonBasics"])[0], "", "")]
            brand, series, point = pool[int(rng.integers(len(pool)))]
            if k == "pen_refill" and point:
                attrs["point"] = point
            line = series.split("|")[-1] if k == "pen_refill" else ""
        else:
            brand = _zipf_pick(rng, sellers[k], 0.6)
            lines = _LINES.get((brand, k), _GENERIC_LINES)
            line = _zipf_pick(rng, lines, 0.5)
        code = "".join(c for c in brand.upper() if c.isalpha())[:2] + str(int(rng.integers(1000, 99999)))
        if k == "pencil":  # keep type and lead consistent
            attrs["lead"] = "#2 HB" if attrs["type"] == "wood-cased" else _zipf_pick(rng, ("0.7 mm", "0.5 mm"))
        if k in ("inkjet_printer", "laser_printer"):
            line = f"{line} {int(rng.integers(1, 99)) * 100 + int(rng.integers(0, 99))}"
            table = _INK_SERIES if k == "inkjet_printer" else _TONER_SERIES
            codes = table.get(brand, (f"{brand} {int(rng.integers(100, 999))}",))
            series = codes[int(rng.integers(len(codes)))]
            attrs["cartridge"] = series
        if k == "label_maker":
            series = f"{brand} {_TAPE_SERIES.get(brand, ('Standard',))[int(rng.integers(len(_TAPE_SERIES.get(brand, ('Standard',)))))]}"
            attrs["tape"] = series.split(" ", 1)[1]
        if k == "label_tape":
            attrs["tape"] = series.split(" ", 1)[1] if " " in series else series
        if k in ("ink", "toner"):
            attrs["cartridge"] = series
            xl = "XL" if attrs["yield"] == "high yield" and k == "ink" else ""
            if k == "ink" and brand in ("Canon", "Brother") and xl:
                xl = " XL"
        if k in ("gel_pen", "ballpoint_pen"):
            series = f"{brand}|{line}"
        if k in ("pen_refill",):
            series = series or f"{brand}|{line}"
        if line:
            attrs["line"] = line
        pack = int(attrs.get("pack", "1"))
        med, sig = kind.price
        unit_scale = (pack / _base_pack(kind)) ** 0.6
        mult = {"high yield": 1.5, "heavy duty": 1.4, "electric": 2.2, "mini": 0.5, "color": 1.6, "hardcover": 1.6,
                "micro-cut": 1.4, "photo": 1.5, "all-in-one": 1.3}
        m = np.prod([mult.get(v, 1.0) for v in attrs.values()])
        price = med * premium.get(brand, 1.0) * unit_scale * m * float(np.exp(rng.normal(0, sig)))
        price = round(max(0.99, round(price) - 0.01 if price > 3 else round(price, 1) - 0.01), 2)
        unit_sg, unit_pl = kind.unit
        if unit_sg and k not in ("copy_paper",):
            pack_t = f"{pack} {_title_case(unit_sg if pack == 1 else unit_pl)}"
        elif k == "copy_paper":
            pack_t = f"{pack} Ream" + ("" if pack == 1 else f" Case ({pack * 500:,} Sheets)")
        else:
            pack_t = f"{pack} Count"
        fmt = {a: _title_case(v) for a, v in attrs.items()}
        fmt.update(brand=brand, line=line, code=code, pack=str(pack), pack_t=pack_t, series=series, xl=xl,
                   point_t=_POINT_LABEL.get(attrs.get("point", ""), attrs.get("point", "")))
        if fmt.get("colour") == "Assorted":
            fmt["colour"] = "Assorted Colors" if k not in ("gel_pen", "ballpoint_pen", "pen_refill") else "Assorted"
        title = kind.titles[int(rng.integers(len(kind.titles)))].format(**fmt)
        title = re.sub(r"\s+", " ", title).replace(" ,", ",").strip()
        if title in titles_seen:
            if attempt < 19:
                continue
            title = f"{title} ({code})"
        titles_seen.add(title)
        desc = _describe(k, kind, brand, line, attrs, pack, rng)
        return {"title": title, "brand": brand, "series": series, "attributes": attrs, "price": float(price), "description": desc}
    raise AssertionError("unreachable")


def _base_pack(kind: Kind) -> float:
    return float(kind.attrs.get("pack", ("1",))[0])


_INTRO = (
    "The {brand} {name} is made for {use}.",
    "Built for {use}, this {sg} from {brand} keeps things simple.",
    "A dependable pick for {use}, from {brand}.",
    "{brand} designed this {sg} for {use}.",
    "Whether at home, at school or in the office, the {brand} {name} is a reliable choice for {use}.",
)
_ATTR_SENT: dict[str, tuple[str, ...]] = {
    "colour": ("It comes in {v}.", "The {v} finish fits in on any desk.", "This one is {v}."),
    "ink": ("Each one writes in {v} ink.", "The ink is {v}."),
    "point": ("The {v} point lays down smooth, even lines.", "Its {v} point keeps handwriting neat."),
    "pack": ("Each pack holds {n} {unit}.", "You get {n} {unit} in one order.", "It is sold as a pack of {n} {unit}."),
    "size": ("It measures {v}.", "The size is {v}."),
    "ruling": ("Pages are {v}.", "The {v} pages suit notes, lists and sketches."),
    "capacity": ("It handles up to {v} at a time.", "Capacity is {v} per pass."),
    "connectivity": ("Connection: {v}.", "It offers a {v} connection."),
    "material": ("It is made of {v}.", "The {v} build feels sturdy."),
    "yield": ("This is the {v} version.", "It is rated {v}."),
    "cartridge": ("It uses {v} cartridges.", "Replacement cartridges are {v}."),
}


def _describe(k: str, kind: Kind, brand: str, line: str, attrs: dict[str, str], pack: int, rng: np.random.Generator) -> str:
    """1-3 sentences from the item's own facts, with varied phrasing."""
    sg, pl = kind.noun
    name = f"{line} {sg}" if line else sg
    use = kind.uses[int(rng.integers(len(kind.uses)))]
    sents = [_INTRO[int(rng.integers(len(_INTRO)))].format(brand=brand, name=name, use=use, sg=sg)]
    keys = [a for a in attrs if a not in ("line", "tape", "type")]
    rng.shuffle(keys)
    n_extra = int(rng.integers(0, 3))
    for a in keys[:n_extra]:
        v = attrs[a]
        if a == "pack":
            if pack <= 1:
                continue
            unit = kind.unit[1] or pl
            pool = _ATTR_SENT["pack"]
            sents.append(pool[int(rng.integers(len(pool)))].format(n=pack, unit=unit))
            continue
        if a == "colour" and v == "assorted":
            sents.append(_pick(rng, ("It comes in assorted colors.", "The pack mixes assorted colors.")))
            continue
        key = "ink" if (a == "colour" and k in ("gel_pen", "ballpoint_pen", "pen_refill", "marker", "ink")) else a
        pool = _ATTR_SENT.get(key)
        if pool is None:
            sents.append(f"{a.replace('_', ' ').capitalize()}: {v}.")
        else:
            sents.append(pool[int(rng.integers(len(pool)))].format(v=v))
    return " ".join(sents)


# --------------------------------------------------------------------------------------------------
# Users and their purchase sequences
# --------------------------------------------------------------------------------------------------

class _Simulator:
    """Draws each user's sequence from latent tastes and the complement graph."""

    def __init__(self, cfg: SyntheticConfig, world: _World, rng: np.random.Generator) -> None:
        self.cfg, self.w, self.rng = cfg, world, rng
        self.n = len(world.items)
        self.kind_pop = np.array([KINDS[k].share for k in world.kind_names])
        self.kind_pop = self.kind_pop / self.kind_pop.sum()
        self.global_p = world.appeal * self.kind_pop[world.kind]
        self.global_cdf = np.cumsum(self.global_p / self.global_p.sum())
        self.kind_of = {k: i for i, k in enumerate(world.kind_names)}
        self.consumable = np.array([KINDS[k].consumable for k in world.kind_names])
        self._series_cache: dict[tuple[int, str], np.ndarray] = {}
        self._brand_cache: dict[tuple[int, int], np.ndarray] = {}
        self._rule_cdf: dict[int, np.ndarray] = {}
        series_arr = np.array(world.series, dtype=object)
        self._series_arr = series_arr
        brand_sizes = np.bincount(world.brand_idx, minlength=len(world.brands)).astype(float)
        self.brand_p = brand_sizes / brand_sizes.sum()
        colours = sorted({c for c in world.colour if c})
        self.colours = colours
        self.colour_idx = np.array([colours.index(c) if c else -1 for c in world.colour])
        self.prices = np.array([it.price for it in world.items])
        self._draw_partners()

    def _in_series(self, kind: int, series: str) -> np.ndarray:
        key = (kind, series)
        if key not in self._series_cache:
            idx = self.w.by_kind[kind]
            self._series_cache[key] = idx[self._series_arr[idx] == series]
        return self._series_cache[key]

    def _of_brand(self, kind: int, brand: int) -> np.ndarray:
        key = (kind, brand)
        if key not in self._brand_cache:
            idx = self.w.by_kind[kind]
            self._brand_cache[key] = idx[self.w.brand_idx[idx] == brand]
        return self._brand_cache[key]

    def user(self, uid: int) -> tuple[list[int], list[str], list[int]]:
        """(items, moves, timestamps) of one user."""
        cfg, rng, w = self.cfg, self.rng, self.w
        K = len(w.kind_names)
        # latent tastes
        interests = rng.dirichlet(np.full(K, cfg.taste_concentration)) * 0.7 + self.kind_pop * 0.3
        fav_brands = rng.choice(len(w.brands), size=3, replace=False, p=self.brand_p)
        loyalty = rng.gamma(2.0, cfg.brand_loyalty / 2.0)
        fav_colour = int(rng.integers(len(self.colours)))
        colour_w = rng.uniform(0, 2.0)
        price_z = rng.normal()
        fav = np.zeros(len(w.brands), dtype=bool)
        fav[fav_brands] = True
        logf = np.where(fav[w.brand_idx], loyalty, 0.0)
        logf += np.where(self.colour_idx == fav_colour, colour_w, 0.0)
        logf += 2.0 * price_z * (w.price_pct - 0.5)
        ufac = w.appeal * np.exp(logf)  # (N,) this user's weight of each item; 0 once bought
        interests_cdf = np.cumsum(interests)

        length = int(min(cfg.max_seq_len, cfg.min_seq_len - 1 + rng.geometric(1.0 / (cfg.mean_seq_len - cfg.min_seq_len + 1))))
        items: list[int] = []
        moves: list[str] = []
        p_c, p_r, p_u, p_n = cfg.complement_prob, cfg.restock_prob, cfg.upgrade_prob, cfg.noise_prob
        tries = 0
        while len(items) < length and tries < length * 20:
            tries += 1
            move, choice = "explore", None
            if items:
                r = rng.random()
                prev = items[-1]
                if r < p_n:
                    move = "noise"
                    choice = int(np.searchsorted(self.global_cdf, rng.random() * self.global_cdf[-1]))
                    choice = min(choice, self.n - 1)
                    if ufac[choice] == 0:
                        choice = None
                elif r < p_n + p_c:
                    move, choice = "complement", self._complement(prev, items, ufac)
                elif r < p_n + p_c + p_r:
                    move, choice = "restock", self._restock(items, ufac)
                elif r < p_n + p_c + p_r + p_u:
                    move, choice = "upgrade", self._upgrade(prev, ufac)
            if choice is None:
                move = "explore"
                k = min(int(np.searchsorted(interests_cdf, rng.random() * interests_cdf[-1])), K - 1)
                cands = w.by_kind[k]
                if KINDS[w.kind_names[k]].series_from:  # cartridges, refills, tapes: for something the user owns
                    owned = sorted({w.series[i] for i in items if w.series[i]})
                    mine = [self._in_series(k, s) for s in owned]
                    mine = [m for m in mine if len(m)]
                    if mine:
                        cands = np.concatenate(mine)
                choice = self._choose(cands, ufac)
            if choice is None:
                continue
            ufac[choice] = 0.0
            items.append(choice)
            moves.append(move)
        # timestamps: complements follow quickly, other purchases weeks apart
        span = cfg.end_time - cfg.start_time
        start = cfg.start_time + rng.uniform(0, 0.75) * span
        gaps = np.array([rng.exponential(4 * 86400 if m == "complement" else 35 * 86400) for m in moves[1:]])
        gaps = gaps + 3600.0
        room = cfg.end_time - start - 3600.0 * len(items)
        if gaps.sum() > room:
            gaps = gaps * (room / gaps.sum())
        ts = np.floor(start + np.concatenate([[0.0], np.cumsum(gaps)])).astype(np.int64)
        ts = ts + np.arange(len(ts))  # strictly increasing even after flooring
        return items, moves, [int(t) for t in ts]

    def _choose(self, cands: np.ndarray, ufac: np.ndarray) -> int | None:
        if len(cands) == 0:
            return None
        c = np.cumsum(ufac[cands])  # bought items weigh 0
        tot = c[-1]
        if tot <= 0:
            return None
        return int(cands[min(int(np.searchsorted(c, self.rng.random() * tot, side="right")), len(cands) - 1)])

    def _complement(self, prev: int, items: list[int], ufac: np.ndarray) -> int | None:
        rules = _COMPLEMENTS.get(self.w.kind_names[self.w.kind[prev]], ())
        if not rules:
            return None
        cdf = self._rule_cdf.get(id(rules))
        if cdf is None:
            cdf = self._rule_cdf[id(rules)] = np.cumsum([r[1] for r in rules])
        to, _, match = rules[min(int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right")), len(rules) - 1)]
        k = self.kind_of[to]
        if match == "series":
            cands = self._in_series(k, self.w.series[prev])
        elif match == "owned":
            owned = {self.w.series[i] for i in items if self.w.series[i]}
            cands = np.concatenate([self._in_series(k, s) for s in sorted(owned)] or [np.zeros(0, dtype=np.int64)])
        elif match == "brand":
            cands = self._of_brand(k, int(self.w.brand_idx[prev]))
            if len(cands) == 0 or ufac[cands].sum() == 0:
                cands = self.w.by_kind[k]
        else:
            # "frequently bought together": most plain complements go to the item's own partners
            if self.rng.random() < self.cfg.partner_prob:
                got = self._choose(self._partners(prev, k), ufac)
                if got is not None:
                    return got
            cands = self.w.by_kind[k]
        return self._choose(cands, ufac)

    def _partners(self, item: int, kind: int) -> np.ndarray:
        """The few items of `kind` that `item` is usually bought with (fixed per item)."""
        return self._partner_table[(int(self.w.kind[item]), kind)][self._pos_in_kind[item]]

    def _draw_partners(self, k: int = 3) -> None:
        """For every plain complement rule (from-kind -> to-kind), give each from-item k partner
        to-items, drawn without replacement in proportion to appeal (Gumbel top-k, vectorised)."""
        self._pos_in_kind = np.zeros(self.n, dtype=np.int64)
        for idx in self.w.by_kind:
            self._pos_in_kind[idx] = np.arange(len(idx))
        self._partner_table: dict[tuple[int, int], np.ndarray] = {}
        for src, rules in _COMPLEMENTS.items():
            a = self.kind_of[src]
            for to, _, match in rules:
                b = self.kind_of[to]
                if match or (a, b) in self._partner_table:
                    continue
                dst = self.w.by_kind[b]
                keys = np.log(self.w.appeal[dst])[None, :] + self.rng.gumbel(size=(len(self.w.by_kind[a]), len(dst)))
                top = np.argsort(-keys, axis=1, kind="stable")[:, : min(k, len(dst))]
                self._partner_table[(a, b)] = np.sort(dst[top], axis=1)  # (n_a, k)

    def _restock(self, items: list[int], ufac: np.ndarray) -> int | None:
        cons = [i for i in items if self.consumable[self.w.kind[i]]]
        if not cons:
            return None
        old = cons[-1 - int(self.rng.integers(min(3, len(cons))))]
        k = int(self.w.kind[old])
        cands = self._in_series(k, self.w.series[old]) if self.w.series[old] else self._of_brand(k, int(self.w.brand_idx[old]))
        return self._choose(cands, ufac)

    def _upgrade(self, prev: int, ufac: np.ndarray) -> int | None:
        k = int(self.w.kind[prev])
        idx = self._in_series(k, self.w.series[prev]) if self.w.series[prev] else self.w.by_kind[k]
        cands = idx[self.prices[idx] > self.prices[prev] * 1.15]
        return self._choose(cands, ufac)


# --------------------------------------------------------------------------------------------------
# Conversations: opening, critique, narratives
# --------------------------------------------------------------------------------------------------

_NEEDS = {
    "Writing & Correction": ("some writing supplies", "pens or markers", "something to write with"),
    "Paper": ("paper products", "something to write notes on", "paper supplies"),
    "Filing & Organization": ("ways to organize my papers", "filing and organizing stuff", "something to keep my desk in order"),
    "Desk Supplies": ("basic desk supplies", "a few desk essentials", "desk tools"),
    "Mailing & Labels": ("mailing supplies", "labels and mailing stuff", "something for shipping and labeling"),
    "Ink & Toner": ("printer supplies", "stuff for my printer", "printing supplies"),
    "Printers": ("a printer", "a new printer setup", "printing equipment"),
    "Computer Accessories": ("computer accessories", "a better desk setup for my computer", "stuff for my computer"),
    "Calculators": ("a calculator", "something for doing math", "a calculator for work or class"),
    "Shredders & Label Makers": ("office equipment", "something for shredding or labeling", "office gadgets"),
}
_CONTEXTS = {
    _SUP: ("I'm restocking the supply closet at our small office", "my kids are going back to school soon",
           "I take a lot of notes for work", "I'm getting organized for the new semester", "I work from home and I'm running low on things"),
    _ELEC: ("I'm upgrading my home office", "I just set up a desk in the spare room", "our office is replacing some old equipment",
            "I work from home most days"),
}
_OPENINGS = (
    "Hi! {ctx}. Can you help me find {need}?",
    "hey, {ctx} and I need {need}",
    "Hello, {ctx}. Any suggestions for {need}?",
    "{ctx}, so I'm looking for {need}. What do you recommend?",
    "Hi there. I'm shopping for {need} because {ctx_lc}.",
)
_CRIT_BRAND_EXCL = ("not {b} again", "something other than {b} this time", "no more {b} please", "anything but {b}",
                    "I'd like to try a different brand than {b}")
_CRIT_BRAND = ("ideally from {b}", "I'd like to stay with {b}", "do you have anything by {b}?", "{b} would be great",
               "I trust {b}, so that brand if possible")
_CRIT_COLOUR = ("in {c} this time", "I'd prefer {c}", "{c} please", "does it come in {c}?", "preferably {c}")
_CRIT_CHEAPER = ("something cheaper", "a bit less pricey", "I'm on a tighter budget this time", "nothing too expensive")
_CRIT_PRICIER = ("I don't mind paying more for better quality", "happy to spend a bit more", "something more premium")
_CRIT_MORE = ("a bigger pack", "more in the box, I go through them fast", "a larger pack")
_CRIT_FEWER = ("a smaller pack", "just a few, not a huge box", "fewer in the pack")
_CRIT_PACK = ("around {n} in a pack", "a {n}-pack would be ideal", "something like {n} per pack")
_CRIT_NEW_CAT = ("now I need some {pl}", "can you find me {pl}?", "next I'm after {pl}", "I also need {pl}")
_CRIT_FITS = ("I need {pl} that fit my {prev}", "can you find {pl} for the {prev}?", "now I need {pl} that work with my {prev}")
_CRIT_SAME_CAT = ("show me other {pl}", "maybe a different {sg}", "I want to try another {sg}", "something else in {pl}")
_CRIT_ATTR = {"point": ("with a {v} point", "{v} point please"), "connectivity": ("it has to be {v}", "{v} would be best"),
              "ruling": ("{v} pages", "it should be {v}"), "size": ("in {v}", "the {v} size"), "tip": ("with a {v}", "{v} please"),
              "yield": ("the {v} kind", "{v} if possible"), "material": ("made of {v}", "{v} would be nice"),
              "capacity": ("one that takes {v}", "at least {v} capacity"), "cut": ("{v} for security", "it should be {v}"),
              "binding": ("a {v} one", "{v} binding")}
_PREFIX = ("", "ok, ", "hmm, ", "thanks! ", "that {prev_noun} was fine but ", "the {prev_noun} works, but ", "good, ")
_PREFIX_PL = ("", "ok, ", "hmm, ", "thanks! ", "those {prev_noun} were fine but ", "the {prev_noun} work, but ", "good, ")


_PLAIN_COLOURS = ("black", "blue", "red", "green", "purple", "pink", "gray", "silver", "yellow", "orange")


def _is_plural(short_title: str) -> bool:
    """Whether a short title names a plural ('... Gel Pens') for verb agreement."""
    last = short_title.split(" ")[-1] if short_title else ""
    return last.endswith("s") and not last.endswith("ss")


def _short(item: Item) -> str:
    """The title up to its first comma, without a trailing model code: 'Pilot G2 Retractable Gel Pens'."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", item.title.split(",")[0]).strip()


def _kind_of(item: Item) -> Kind:
    return _KIND_BY_LEAF[item.category]


_KIND_BY_LEAF = {k.path[2]: k for k in KINDS.values()}


def _typo(text: str, protected: set[str], rng: np.random.Generator) -> str:
    """One deliberate typo in a word that is not part of a constraint value."""
    words = text.split(" ")
    ok = [i for i, wd in enumerate(words) if len(wd) >= 5 and wd.isalpha() and wd.lower() not in protected]
    if not ok:
        return text
    i = ok[int(rng.integers(len(ok)))]
    wd = words[i]
    j = int(rng.integers(1, len(wd) - 1))
    op = int(rng.integers(3))
    if op == 0:
        wd = wd[:j] + wd[j + 1] + wd[j] + wd[j + 2:]
    elif op == 1:
        wd = wd[:j] + wd[j + 1:]
    else:
        wd = wd[:j] + wd[j] + wd[j:]
    words[i] = wd
    return " ".join(words)


def _pick(rng: np.random.Generator, pool: tuple[str, ...]) -> str:
    return pool[int(rng.integers(len(pool)))]


def _critique(prev: Item, tgt: Item, move: str, cfg: SyntheticConfig, rng: np.random.Generator) -> tuple[str, dict[str, str], str, bool]:
    """(text, intended constraints, difficulty, has_typo) of a critique steering from prev to tgt."""
    pk, tk = _kind_of(prev), _kind_of(tgt)
    clauses: list[str] = []
    cons: dict[str, str] = {}
    prev_noun = pk.noun[0]
    if tgt.category != prev.category:
        cons["category"] = tgt.category
        if move == "complement" and tgt.attributes.get("cartridge", tgt.attributes.get("tape", "")) and \
                (tgt.attributes.get("cartridge") == prev.attributes.get("cartridge") or tgt.attributes.get("tape") == prev.attributes.get("tape")):
            clauses.append(_pick(rng, _CRIT_FITS).format(pl=tk.noun[1], prev=prev_noun))
            cons["compatible_with"] = prev.id
        elif (move == "complement" and tgt.category == "Pen Refills" and tgt.brand == prev.brand
              and tgt.attributes.get("line") == prev.attributes.get("line")):
            clauses.append(_pick(rng, _CRIT_FITS).format(pl=tk.noun[1], prev=prev_noun))
            cons["compatible_with"] = prev.id
        else:
            clauses.append(_pick(rng, _CRIT_NEW_CAT).format(pl=tk.noun[1]))
    else:
        clauses.append(_pick(rng, _CRIT_SAME_CAT).format(sg=tk.noun[0], pl=tk.noun[1]))
    options: list[tuple[str, str, str]] = []  # (key, value, clause)
    if tgt.brand and tgt.brand != prev.brand:
        if rng.random() < 0.5:
            options.append(("brand_exclude", prev.brand, _pick(rng, _CRIT_BRAND_EXCL).format(b=prev.brand)))
        else:
            options.append(("brand", tgt.brand, _pick(rng, _CRIT_BRAND).format(b=tgt.brand)))
    elif tgt.brand:
        options.append(("brand", tgt.brand, _pick(rng, _CRIT_BRAND[1:2] + _CRIT_BRAND[3:4]).format(b=tgt.brand)))
    colour = tgt.attributes.get("colour", "")
    if colour and colour not in ("assorted",) and colour != prev.attributes.get("colour"):
        options.append(("colour", colour, _pick(rng, _CRIT_COLOUR).format(c=colour)))
    if tgt.price is not None and prev.price is not None and tgt.category == prev.category:
        if tgt.price < 0.8 * prev.price:
            options.append(("price_direction", "lower", _pick(rng, _CRIT_CHEAPER)))
        elif tgt.price > 1.25 * prev.price:
            options.append(("price_direction", "higher", _pick(rng, _CRIT_PRICIER)))
    tp, pp = tgt.attributes.get("pack"), prev.attributes.get("pack")
    if tp and pp and tp != pp and tgt.category == prev.category:
        if rng.random() < 0.5:
            options.append(("pack", tp, _pick(rng, _CRIT_PACK).format(n=tp)))
        else:
            up = int(tp) > int(pp)
            options.append(("pack_direction", "more" if up else "fewer", _pick(rng, _CRIT_MORE if up else _CRIT_FEWER)))
    for a in sorted(_CRIT_ATTR):
        v = tgt.attributes.get(a)
        if v and v != prev.attributes.get(a):
            options.append((a, v, _pick(rng, _CRIT_ATTR[a]).format(v=v)))
    order = rng.permutation(len(options))
    n_pick = min(len(options), int(rng.integers(1, 4)))
    for j in order[:n_pick]:
        key, v, clause = options[j]
        cons[key] = v
        clauses.append(clause)
    plural = _is_plural(_short(prev))
    prefix = _pick(rng, _PREFIX_PL if plural else _PREFIX).format(prev_noun=pk.noun[1] if plural else prev_noun)
    clauses = [c.rstrip("?") if i < len(clauses) - 1 else c for i, c in enumerate(clauses)]
    if len(clauses) == 1:
        body = clauses[0]
    else:
        joiner = _pick(rng, (", ", " and ", ". also ", ", and "))
        body = ", ".join(clauses[:-1]) + joiner + clauses[-1]
    text = prefix + body
    text = text[0].upper() + text[1:] if rng.random() < 0.5 else text
    if not text.endswith("?"):
        text += _pick(rng, ("", ".", "!"))
    protected = {str(v).lower() for v in cons.values()} | {w.lower() for v in cons.values() for w in str(v).split()}
    typo = rng.random() < cfg.typo_rate
    if typo:
        new = _typo(text, protected, rng)
        typo = new != text
        text = new
    strong = sum(k in cons for k in ("brand", "brand_exclude", "compatible_with", "colour", "pack", "point", "connectivity"))
    difficulty = "easy" if strong >= 2 or "compatible_with" in cons else ("medium" if strong == 1 else "hard")
    return text, cons, difficulty, typo


def _opening(tgt: Item, history: list[Item], rng: np.random.Generator) -> str:
    need = _pick(rng, _NEEDS[tgt.categories[1]])
    tops = [h.categories[0] for h in history]
    top = max(set(tops), key=lambda t: (tops.count(t), t))
    ctx = _pick(rng, _CONTEXTS[top])
    return _pick(rng, _OPENINGS).format(ctx=ctx, ctx_lc=ctx if ctx.startswith("I ") or ctx.startswith("I'") else ctx[0].lower() + ctx[1:], need=need)


def _attr_phrase(item: Item) -> list[str]:
    """Short noun phrases of the item's attributes, for narratives."""
    a, out = item.attributes, []
    if a.get("colour") and a["colour"] != "assorted":
        leaf = item.category
        what = ("ink" if leaf in ("Gel Pens", "Ballpoint Pens", "Pen Refills", "Ink Cartridges", "Permanent Markers",
                                  "Highlighters", "Dry Erase Markers") else
                "toner" if leaf == "Toner Cartridges" else "cover" if leaf == "Notebooks" else
                "handle" if leaf == "Scissors" else "labels" if leaf == "Label Maker Tape" else
                "finish" if item.categories[0] == _ELEC or leaf in ("Staplers", "Desk Organizers") else "color")
        out.append(f"{a['colour']} {what}" if what in ("ink", "toner", "labels") else _a(f"{a['colour']} {what}"))
    elif a.get("colour") == "assorted":
        out.append("assorted colors")
    if a.get("point"):
        out.append(f"a {a['point']} point")
    for key in ("connectivity", "ruling", "capacity", "yield", "tip", "cut", "material"):
        if a.get(key):
            out.append({"connectivity": f"a {a[key]} connection" if a[key] != "handheld" else "a handheld design",
                        "ruling": f"{a[key]} pages", "capacity": f"room for {a[key]}", "yield": f"{a[key]} cartridges",
                        "tip": f"a {a[key]}", "cut": f"{a[key]} shredding", "material": f"a {a[key]} build"}[key])
    pack = int(a.get("pack", "1"))
    if pack > 1:
        k = _kind_of(item)
        out.append(f"{pack} {k.unit[1] or k.noun[1]} per pack")
    return out


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _narratives(prev: Item, tgt: Item, history: list[Item], move: str, cons: dict[str, str],
                rng: np.random.Generator) -> Narratives:
    """Purchase reason, endorsement and user summary, from catalogue facts only."""
    tkind = _kind_of(tgt)
    pshort, tshort = _short(prev), _short(tgt)
    who = _pick(rng, ("this shopper", "the user", "this customer"))
    # purchase reason
    same_cat = tgt.category == prev.category
    them = "them" if _is_plural(pshort) else "it"
    if move in ("complement", "explore", "noise") and same_cat:
        r = _pick(rng, (f"Happy with the {pshort}, {who} came back for more {tkind.noun[1]}.",
                        f"After the {pshort}, {who} wanted another option in {tkind.noun[1]}."))
    elif move == "complement" and "compatible_with" in cons:
        r = _pick(rng, (f"After buying the {pshort}, {who} needed {tkind.noun[1]} that fit {them}.",
                        f"{who.capitalize()} had just bought the {pshort} and wanted matching {tkind.noun[1]} to go with {them}."))
    elif move == "complement":
        r = _pick(rng, (f"After the {pshort}, {who} moved on to {tkind.noun[1]} to go with {them}.",
                        f"Having bought the {pshort}, {who} rounded out the order with {tkind.noun[1]}."))
    elif move == "restock":
        r = _pick(rng, (f"{who.capitalize()} had bought {tgt.brand} {tkind.noun[1]} before and came back to restock.",
                        f"Running low on {tkind.noun[1]}, {who} went back to {tgt.brand}."))
    elif move == "upgrade":
        r = _pick(rng, (f"{who.capitalize()} wanted a step up from the {pshort}.",
                        f"The {pshort} did the job, but {who} wanted something better in the same category."))
    else:
        r = _pick(rng, (f"{who.capitalize()} was shopping for {tkind.noun[1]} after the {pshort}.",
                        f"Next on {who}'s list after the {pshort} were {tkind.noun[1]}."))
    extra = []
    if "brand_exclude" in cons:
        extra.append(f"They wanted a change from {cons['brand_exclude']}.")
    if "colour" in cons:
        extra.append(_pick(rng, (f"They asked for {cons['colour']} this time.", f"They specifically wanted {cons['colour']}.")))
    if cons.get("price_direction") == "lower":
        extra.append("They also wanted to spend less this time.")
    reason = " ".join([r] + extra[: int(rng.integers(0, 3))])
    # endorsement
    facts = _attr_phrase(tgt)
    rng.shuffle(facts)
    pl = _is_plural(tshort)
    e1 = _pick(rng, ("The {t} {offer} {f}.", "With {f}, the {t} {be} a solid pick.", "The {t} {come} with {f}."))
    sents = [e1.format(t=tshort, f=_join(facts[:3]) if facts else "a simple, practical design",
                       offer="offer" if pl else "offers", be="are" if pl else "is", come="come" if pl else "comes")]
    It, it = ("They", "they") if pl else ("It", "it")
    is_, comes, costs, pairs = ("are", "come", "cost", "pair") if pl else ("is", "comes", "costs", "pairs")
    hist_brands = {h.brand for h in history}
    if tgt.brand in hist_brands:
        sents.append(_pick(rng, (f"You have bought from {tgt.brand} before, so {it} should feel familiar.",
                                 f"{It} {comes} from {tgt.brand}, a brand already in your order history.")))
    if move == "complement":
        sents.append(_pick(rng, (f"{It} {pairs} naturally with the {pshort} you just bought.",
                                 f"{It} {is_} a natural next step after your {pshort}.")) if not same_cat else
                     f"{It} {is_} a fresh take on the {pshort} you just bought.")
    if tgt.price is not None and prev.price is not None and tgt.category == prev.category:
        if tgt.price < prev.price:
            sents.append(f"At ${tgt.price:.2f} {it} {costs} less than the {pshort}.")
        elif tgt.price > prev.price:
            sents.append(f"At ${tgt.price:.2f} {it} {is_} a step up from the {pshort}.")
    if len(sents) < 2:
        sents.append(f"{It} {is_} made for {_pick(rng, tkind.uses)}.")
    endorsement = " ".join(sents[:4])
    # user summary
    cats = [h.category for h in history]
    top_cats = sorted(set(cats), key=lambda c: (-cats.count(c), c))[:3]
    brands = [h.brand for h in history if h.brand]
    top_brands = [b for b in sorted(set(brands), key=lambda b: (-brands.count(b), b)) if brands.count(b) >= 2][:2]
    s = [_pick(rng, ("This shopper mostly buys {c}.", "Their history centers on {c}.", "Most of their purchases are {c}."))
         .format(c=_join([c.lower() for c in top_cats]))]
    if top_brands:
        s.append(_pick(rng, ("They come back to {b} again and again.", "They show loyalty to {b}.", "{b} {show} up repeatedly in their orders."))
                 .format(b=_join(top_brands), show="show" if len(top_brands) > 1 else "shows"))
    else:
        s.append("They try a wide mix of brands rather than sticking to one.")
    cols = [h.attributes.get("colour", "") for h in history if h.attributes.get("colour") in _PLAIN_COLOURS]
    if cols:
        c = max(set(cols), key=lambda x: (cols.count(x), x))
        if cols.count(c) >= 2:
            s.append(f"They lean toward {c} items.")
    pcts = [h.price for h in history if h.price is not None]
    if pcts:
        s.append(f"Their purchases range from ${min(pcts):.2f} to ${max(pcts):.2f}.")
    s.append(_pick(rng, ("Most recently they bought the {p}.", "Their latest purchase was the {p}.")).format(p=pshort))
    return Narratives(purchase_reason=reason, endorsement=endorsement, user_summary=" ".join(s[:5]))


def _conversations(cfg: SyntheticConfig, catalog: Catalog, seqs: list[UserSequence], moves: list[list[str]],
                   rng: np.random.Generator) -> list[Conversation]:
    eligible = [u for u, s in enumerate(seqs)
                if catalog[s.items[-1]].categories[:2] == catalog[s.items[-2]].categories[:2]]
    n = min(cfg.num_conversations, len(eligible))
    if n < cfg.num_conversations:
        log.info("only %d users qualify for conversations (asked for %d)", len(eligible), cfg.num_conversations)
    chosen = rng.choice(len(eligible), size=n, replace=False) if n else []
    out = []
    for j in chosen:
        u = eligible[int(j)]
        s = seqs[u]
        hist = [catalog[i] for i in s.items[:-1]]
        prev, tgt = hist[-1], catalog[s.items[-1]]
        crit, cons, difficulty, typo = _critique(prev, tgt, moves[u][-1], cfg, rng)
        turns = [Turn("user", _opening(tgt, hist, rng)), Turn("user", crit, kind="critique")]
        out.append(Conversation(
            user_id=s.user_id, history=[h.id for h in hist], turns=turns, target=tgt.id,
            narratives=_narratives(prev, tgt, hist, moves[u][-1], cons, rng), previous_item=prev.id,
            meta={"difficulty": difficulty, "critique_attributes": cons, "typo": typo, "source": "synthetic"}))
    return out


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def generate(cfg: SyntheticConfig | None = None) -> Dataset:
    """Generate the synthetic store (deterministic given `cfg`)."""
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    world = _build_items(cfg, np.random.default_rng(rng.integers(2**62)))
    catalog = Catalog(world.items)
    sim = _Simulator(cfg, world, np.random.default_rng(rng.integers(2**62)))
    width = len(str(cfg.num_users - 1))
    seqs, moves = [], []
    for u in range(cfg.num_users):
        items, mv, ts = sim.user(u)
        seqs.append(UserSequence(f"U{u:0{width}d}", items, timestamps=ts))
        moves.append(mv)
    convs = _conversations(cfg, catalog, seqs, moves, np.random.default_rng(rng.integers(2**62)))
    return Dataset(name="synthetic", catalog=catalog, interactions=Interactions(seqs, len(catalog)),
                   conversations=convs, info={"source": "synthetic", "config": asdict(cfg)})


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a data store is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_store(dataset: Dataset, directory: str | Path, name: str = "Synthetic") -> Path:
    """Write `dataset` as `<name>.item.json`, `<name>.inter.json`, `<name>.time.json` (when it has
    timestamps) and `conversations.jsonl` into `directory`; `load_benchmark_pair(directory)` and
    `load_conversations(directory/"conversations.jsonl", catalog)` read it back."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cat = dataset.catalog
    for it in cat:
        if any(", " in c for c in it.categories):
            raise ValueError(f"item {it.id!r}: category names may not contain ', ' (the benchmark-pair separator)")

    def jid(x: str) -> int | str:
        return int(x) if x.isdigit() and str(int(x)) == x else x

    items = {it.id: {"title": it.title, "description": it.description, "brand": it.brand,
                     "categories": ", ".join(it.categories), "price": it.price, "attributes": it.attributes} for it in cat}
    inter = {s.user_id: [jid(cat.ids[i]) for i in s.items] for s in dataset.interactions}
    _write_atomic(d / f"{name}.item.json", json.dumps(items, ensure_ascii=False, indent=1))
    _write_atomic(d / f"{name}.inter.json", json.dumps(inter))
    if dataset.interactions.has_timestamps:
        times = {s.user_id: list(s.timestamps or []) for s in dataset.interactions}
        _write_atomic(d / f"{name}.time.json", json.dumps(times))
    _write_atomic(d / "conversations.jsonl",
                  "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in dataset.conversations))
    if "config" in dataset.info:
        _write_atomic(d / "synthetic_config.json", json.dumps(dataset.info["config"], indent=2))
    return d
