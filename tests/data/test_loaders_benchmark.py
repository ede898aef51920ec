"""The benchmark JSON pair loader and the dev-conversations loader (files written by the tests + the real dev set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lumenrec.data import Catalog, Item, load_benchmark_pair, load_conversations
from lumenrec.errors import DataFormatError


def write_pair(d: Path, inter: dict | str, items: dict | str | None = None, name: str = "Toy") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.inter.json").write_text(inter if isinstance(inter, str) else json.dumps(inter, indent=2))
    if items is not None:
        (d / f"{name}.item.json").write_text(items if isinstance(items, str) else json.dumps(items, indent=2))
    return d


def conv(user: str = "u1", history=("1", "2"), target="3", **kw) -> dict:
    return {"user_id": user, "history": list(history), "previous_item": history[-1], "target": target,
            "turns": [{"role": "user", "text": "hi"}, {"role": "user", "text": "not red", "kind": "critique"}],
            "narratives": {"purchase_reason": "r", "endorsement": "e", "user_summary": "s", "tone": "warm"}, **kw}


def test_pair_round_trip(tmp_path):
    d = write_pair(tmp_path / "p", {"u1": [2, 1, 3], "u2": ["3", "10"]},
                   {"1": {"title": "One", "brand": "B", "categories": "Office, Pens"}, "2": {"title": "Two"},
                    "3": {"title": "Three"}})
    ds = load_benchmark_pair(d)
    assert ds.catalog.ids == ["1", "2", "3", "10"]  # numeric ids ascending
    assert [ds.catalog[i].id for i in ds.interactions.user("u1").items] == ["2", "1", "3"]
    assert ds.catalog.get("1").categories == ["Office", "Pens"]
    assert ds.info["items_without_metadata"] == 1 and ds.catalog.get("10").title == "item 10"


def test_bad_json_names_file_and_line(tmp_path):
    d = write_pair(tmp_path / "p", '{\n  "u1": [1, 2],\n  "u2": [3,, 4]\n}')
    with pytest.raises(DataFormatError) as ei:
        load_benchmark_pair(d)
    assert ei.value.line == 3 and f"{d / 'Toy.inter.json'}:3:" in str(ei.value) and "invalid JSON" in str(ei.value)


def test_non_object_item_names_line_of_its_key(tmp_path):
    items = '{\n  "1": {"title": "One"},\n  "2": "just a string",\n  "3": {"title": "Three"}\n}'
    d = write_pair(tmp_path / "p", {"u1": [1, 2, 3]}, items)
    with pytest.raises(DataFormatError) as ei:
        load_benchmark_pair(d)
    assert ei.value.line == 3 and "'2'" in str(ei.value) and f"{d / 'Toy.item.json'}:3:" in str(ei.value)
    ds = load_benchmark_pair(d, skip_bad=True)
    assert ds.info["skipped"] == 1 and ds.catalog.get("2").title == "item 2"  # kept with a placeholder


def test_bad_sequence_is_skipped_with_skip_bad(tmp_path):
    inter = '{\n  "u1": [1, 2],\n  "u2": "oops",\n  "u3": [2, 1]\n}'
    d = write_pair(tmp_path / "p", inter)
    with pytest.raises(DataFormatError) as ei:
        load_benchmark_pair(d)
    assert ei.value.line == 3
    ds = load_benchmark_pair(d, skip_bad=True)
    assert ds.info["skipped"] == 1 and [s.user_id for s in ds.interactions] == ["u1", "u3"]


def test_conversations_round_trip_and_meta(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps(conv(difficulty="easy")) + "\n")
    (c,) = load_conversations(p)
    assert c.critique == "not red" and c.opening == "hi" and c.previous_item == "2" and c.target == "3"
    assert c.meta == {"difficulty": "easy"} and c.narratives.extra == {"tone": "warm"}
    assert c.to_dict()["difficulty"] == "easy"


def test_conversation_unknown_item_names_the_field(tmp_path):
    cat = Catalog([Item(str(i), f"t{i}") for i in (1, 2, 3)])
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps(conv()) + "\n" + json.dumps(conv("u2", target="99")) + "\n")
    with pytest.raises(DataFormatError) as ei:
        load_conversations(p, cat)
    e = ei.value
    assert e.line == 2 and e.field == "target" and "'99'" in str(e) and f"{p}:2:" in str(e)


def test_conversations_bad_json_and_skip_bad(tmp_path):
    p = tmp_path / "c.jsonl"
    bad_turns = conv("u3")
    bad_turns["turns"] = [{"role": "robot", "text": "x"}]
    p.write_text("\n".join([json.dumps(conv()), "{oops", json.dumps(bad_turns), json.dumps(conv("u4"))]) + "\n")
    with pytest.raises(DataFormatError) as ei:
        load_conversations(p)
    assert ei.value.line == 2 and "invalid JSON" in str(ei.value)
    from lumenrec.data import LoadReport

    rep = LoadReport(str(p))
    convs = load_conversations(p, skip_bad=True, report=rep)
    assert [c.user_id for c in convs] == ["u1", "u4"]
    assert rep.num_skipped == 2 and [ln for ln, _ in rep.skipped] == [2, 3]
    assert "turns[0].role" in rep.skipped[1][1]


def test_real_regen_office_dev(shared_data):
    conv_path = shared_data / "regen-office-dev" / "conversations.jsonl"
    if not conv_path.exists() or not (shared_data / "amazon-office-2014").is_dir():
        pytest.skip("regen-office-dev or amazon-office-2014 not in the shared data")
    ds = load_benchmark_pair(shared_data / "amazon-office-2014")
    convs = load_conversations(conv_path, ds.catalog)  # raises if any id is not in the catalogue
    assert len(convs) == 150
    assert all(c.critique and c.target in ds.catalog and c.history[-1] == c.previous_item for c in convs)
    assert {c.meta["difficulty"] for c in convs} == {"easy", "medium", "hard"}


def test_non_utf8_bytes_are_reported_at_their_line(tmp_path):
    """A stray Latin-1 byte must give file:line, not a UnicodeDecodeError traceback."""
    import pytest

    from lumenrec.data import Catalog, Item, load_conversations
    from lumenrec.errors import DataFormatError

    cat = tmp_path / "cat.jsonl"
    Catalog([Item("a", "pen"), Item("b", "ink")]).save_jsonl(cat)
    cat.write_bytes(cat.read_bytes() + b'{"id": "c", "title": "caf\xe9"}\n')
    with pytest.raises(DataFormatError, match=r"cat\.jsonl:3: not UTF-8"):
        Catalog.load_jsonl(cat)
    conv = tmp_path / "conv.jsonl"
    conv.write_bytes(b'\n\xff\n')
    with pytest.raises(DataFormatError, match=r"conv\.jsonl:2: not UTF-8"):
        load_conversations(conv)
    (tmp_path / "X.inter.json").write_bytes(b'{"u1": [1, 2],\n "u2": "\xff"}')
    from lumenrec.data import load_benchmark_pair

    with pytest.raises(DataFormatError, match=r"X\.inter\.json:2: not UTF-8"):
        load_benchmark_pair(tmp_path)
