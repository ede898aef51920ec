"""REGEN loader: field map, chronology, conversations, unknown fields, errors. Files written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lumenrec.data.regen import RegenFieldMap, get_path, load_regen
from lumenrec.data.registry import load_dataset
from lumenrec.errors import ConfigError, DataFormatError


def purchase(asin: str, t: int, title: str | None = None, critique: str | None = None, **extra) -> dict:
    p = {"item": {"asin": asin, "title": title if title is not None else f"Title {asin}",
                  "category": "Office Products - Writing - Pens", "price": 2.5},
         "review": {"summary": "sum", "rating": 4, "text": f"text {asin}", "unix_time": t}}
    if critique is not None:
        p["critique"] = critique
    p.update(extra)
    return p


def user(uid: str, purchases: list[dict], **extra) -> dict:
    return {"reviewer_id": uid, "purchase_history": purchases, "user": {"long_summary": f"summary of {uid}"}, **extra}


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def test_round_trip_sequences_and_conversations(tmp_path):
    p = write_jsonl(tmp_path / "office.jsonl", [
        user("U1", [purchase("B", 200, critique="a blue one"), purchase("A", 100), purchase("C", 300, critique="bigger")]),
        user("U2", [purchase("A", 5), purchase("D", 6, title="")]),
    ])
    ds = load_regen(p)
    assert ds.summary() == {"name": "regen-office", "items": 4, "users": 2, "interactions": 5, "conversations": 2}
    s = ds.interactions.user("U1")
    assert [ds.catalog[i].id for i in s.items] == ["A", "B", "C"]  # sorted by unix_time
    assert s.timestamps == [100, 200, 300] and s.reviews == ["text A", "text B", "text C"] and s.ratings == [4.0] * 3
    item = ds.catalog.get("B")
    assert item.categories == ["Office Products", "Writing", "Pens"] and item.price == 2.5
    assert ds.catalog.get("D").title == "item D" and ds.info["items_without_title"] == 1
    c = ds.conversations[0]
    assert (c.user_id, c.history, c.previous_item, c.target) == ("U1", ["A", "B"], "B", "C")
    assert [(t.kind, t.text) for t in c.turns] == [("past_critique", "a blue one"), ("critique", "bigger")]
    assert c.critique == "bigger"
    assert c.narratives.user_summary == "summary of U1"
    c2 = ds.conversations[1]
    assert c2.critique is None and c2.turns == [] and c2.history == ["A"]


def test_loaded_through_registry_by_path(tmp_path):
    d = tmp_path / "regen" / "REGEN"
    d.mkdir(parents=True)
    write_jsonl(d / "office.jsonl", [user("U1", [purchase("A", 1), purchase("B", 2)])])
    ds = load_dataset(str(tmp_path))
    assert ds.info["format"] == "regen" and len(ds.conversations) == 1


def test_unknown_fields_are_kept(tmp_path):
    rec = user("U1", [purchase("A", 1, gift=True), purchase("B", 2, purchase_reason="needed ink",
                                                           endorsement="great ink")], split="train")
    rec["user"]["short_summary"] = "ink buyer"
    rec["purchase_history"][0]["item"]["color"] = "red"
    ds = load_regen(write_jsonl(tmp_path / "r.jsonl", [rec]))
    c = ds.conversations[0]
    assert c.meta["split"] == "train"
    assert c.meta["purchase_extra"] == {0: {"gift": True, "item.color": "red"}}
    assert c.narratives.purchase_reason == "needed ink" and c.narratives.endorsement == "great ink"
    assert c.narratives.extra == {"user.short_summary": "ink buyer"}
    assert "user" not in c.meta and "reviewer_id" not in c.meta and "purchase_history" not in c.meta


def test_field_map_override(tmp_path):
    rec = {"uid": "U7", "events": [
        {"product": {"id": "X", "name": "Stapler", "path": "Office>Desk"}, "ts": 2, "steer": "heavier"},
        {"product": {"id": "Y", "name": "Tape", "path": "Office>Tape"}, "ts": 1}],
        "profile": {"blurb": "a tidy person"}}
    p = write_jsonl(tmp_path / "custom.jsonl", [rec])
    with pytest.raises(DataFormatError):
        load_regen(p)  # the default map does not fit
    fm = RegenFieldMap.from_dict({
        "user_id": ["uid"], "purchases": ["events"], "item_id": ["product.id"], "item_title": ["product.name"],
        "item_category": ["product.path"], "timestamp": ["ts"], "critique": ["steer"],
        "user_summary": ["profile.blurb"], "category_sep": ">"})
    ds = load_regen(p, fm)
    c = ds.conversations[0]
    assert (c.user_id, c.history, c.target) == ("U7", ["Y"], "X")
    assert c.critique == "heavier" and c.narratives.user_summary == "a tidy person"
    assert ds.catalog.get("X").title == "Stapler" and ds.catalog.get("X").categories == ["Office", "Desk"]
    # narrative on the target purchase via the `target.` prefix
    fm2 = RegenFieldMap.from_dict({**{k: v for k, v in vars(fm).items()}, "endorsement": ["target.steer"]})
    assert load_regen(p, fm2).conversations[0].narratives.endorsement == "heavier"


def test_field_map_validation():
    with pytest.raises(ConfigError, match="item_id"):
        RegenFieldMap(item_id=())
    with pytest.raises(ConfigError, match="bogus"):
        RegenFieldMap.from_dict({"bogus": ["x"]})
    with pytest.raises(ConfigError):
        RegenFieldMap(critique=("a..b[",))
    assert get_path({"a": [{"b": 1}, {"b": 2}]}, "a[-1].b") == 2


def test_bad_record_names_first_line_and_field_path(tmp_path):
    good = user("U1", [purchase("A", 1), purchase("B", 2)])
    bad1 = user("U2", [purchase("A", 1), {"item": {"title": "no asin"}, "review": {"unix_time": 3}}])
    bad2 = user("U3", [purchase("A", 1), purchase("B", "yesterday")])
    p = write_jsonl(tmp_path / "r.jsonl", [good, "", bad1, bad2])
    with pytest.raises(DataFormatError) as ei:
        load_regen(p)
    e = ei.value
    assert e.line == 3 and e.field == "purchase_history[1].item.asin"
    assert f"{p}:3:" in str(e) and "purchase_history[1].item.asin" in str(e)


def test_wrong_type_names_field_path(tmp_path):
    p = write_jsonl(tmp_path / "r.jsonl", [user("U3", [purchase("A", 1), purchase("B", "yesterday")])])
    with pytest.raises(DataFormatError) as ei:
        load_regen(p)
    assert ei.value.field == "purchase_history[1].review.unix_time" and ei.value.line == 1


def test_skip_bad_counts_and_reasons(tmp_path):
    recs = [user("U1", [purchase("A", 1), purchase("B", 2)]), "{not json",
            user("U2", []), user("U1", [purchase("C", 1)]), user("U4", [purchase("C", 1), purchase("A", 2)])]
    p = write_jsonl(tmp_path / "r.jsonl", recs)
    ds = load_regen(p, skip_bad=True)
    assert [c.user_id for c in ds.conversations] == ["U1", "U4"]
    assert ds.info["skipped"] == 3
    assert ds.info["skipped_reasons"] == {"invalid JSON": 1, "field 'purchase_history'": 1, "field 'reviewer_id'": 1}
    assert [d.split(": ", 1)[0] for d in ds.info["skipped_detail"]] == [f"{p}:2", f"{p}:3", f"{p}:4"]
    assert "duplicate user id 'U1' (first on line 1)" in ds.info["skipped_detail"][2]
