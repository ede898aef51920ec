"""The office-2018 (LC-Rec style) directory loader, on tiny files written by the tests and on the real data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lumenrec.data.office2018 import load_office2018
from lumenrec.data.registry import load_dataset
from lumenrec.errors import DataFormatError

HEADER = ["user_id", "history_item_title", "item_title", "history_item_id", "item_id", "history_item_sid", "item_sid"]


def write_dir(d: Path, valid: list[tuple[str, list[int], int]], test: list[tuple[str, list[int], int]],
              n_items: int = 6) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    items = {str(i): {"title": f"Item &amp; {i}", "description": repr([f"Para {i}.", "<b>Bold</b> text"]),
                      "brand": "B", "categories": ""} for i in range(n_items)}
    (d / "Office_Products.item.json").write_text(json.dumps(items, indent=2))
    (d / "items.tsv").write_text("".join(f"<a_{i}><b_0>\tItem & {i}\t{i}\n" for i in range(n_items)))
    for name, rows in (("valid", valid), ("test", test)):
        with open(d / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(HEADER)
            for u, h, t in rows:
                w.writerow([u, str([f"t{x}" for x in h]), f"t{t}", str(h), t, "[]", ""])
    return d


def test_rebuilds_sequences_and_keeps_official_cases(tmp_path):
    d = write_dir(tmp_path / "o18", valid=[("u1", [0, 1], 2)],
                  test=[("u1", [0, 1, 2], 3), ("u2", [4], 5), ("u1", [1, 2, 3], 4)])  # u1 truncated to 3
    ds = load_office2018(d)
    assert ds.name == "Office_Products-2018" and ds.catalog.ids == [str(i) for i in range(6)]
    seqs = {s.user_id: s.items for s in ds.interactions}
    assert seqs == {"u1": [0, 1, 2, 3, 4], "u2": [4, 5]}
    sp = ds.info["splits"]
    assert len(sp.valid) == 1 and len(sp.test) == 3
    assert sp.test.users == ["u1", "u2", "u1"] and list(sp.test.targets) == [3, 5, 4]
    assert np.array_equal(sp.test.histories[2], [1, 2, 3])
    assert sp.semantic_ids[3] == "<a_3><b_0>"
    it = ds.catalog.get("2")
    assert it.title == "Item & 2" and it.description == "Para 2. Bold text" and it.brand == "B"
    assert "3 cases" in str(sp)  # short repr for `lumenrec data info`
    assert load_dataset(str(d)).summary() == ds.summary()  # autodetected by path


def test_bad_row_names_file_and_line(tmp_path):
    d = write_dir(tmp_path / "o18", valid=[("u1", [0], 1)], test=[("u1", [0, 1], 2)])
    with open(d / "test.csv", "a") as f:
        f.write('u9,"[]",x,"[1, 2",3,[],\n')  # line 3: history is not a list literal
    with pytest.raises(DataFormatError) as ei:
        load_office2018(d)
    assert f"{d / 'test.csv'}:3:" in str(ei.value)
    ds = load_office2018(d, skip_bad=True)
    assert ds.info["skipped"] == 1 and ds.summary()["users"] == 1


def test_inconsistent_history_is_reported(tmp_path):
    d = write_dir(tmp_path / "o18", valid=[], test=[("u1", [0, 1], 2), ("u1", [4, 5], 3)])
    with pytest.raises(DataFormatError, match="not a suffix"):
        load_office2018(d)
    ds = load_office2018(d, skip_bad=True)
    assert ds.info["skipped"] == 1 and ds.interactions.user("u1").items == [0, 1, 2]


def test_real_office_2018(shared_data):
    if not (shared_data / "amazon-office-2018").is_dir():
        pytest.skip("amazon-office-2018 not in the shared data")
    ds = load_dataset("office-2018")
    assert ds.summary()["items"] == 3459 and ds.info["skipped"] == 0
    sp = ds.info["splits"]
    assert len(sp.valid) == 4866 and len(sp.test) == 4866
    # every official test case is a prefix -> next item of its user's rebuilt sequence
    s = ds.interactions.user(sp.test.users[0])
    h, t = sp.test.histories[0], sp.test.targets[0]
    seq = s.items
    k = next(i for i in range(len(seq)) if seq[max(0, i - len(h)):i] == list(h) and seq[i] == t)
    assert k >= len(h)
