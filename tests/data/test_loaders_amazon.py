"""Raw Amazon 2014/2018 loaders, k-core, autodetection. Files are written by the tests."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from lumenrec.data.amazon_raw import (
    AmazonLoadConfig,
    build_dataset,
    item_from_meta,
    k_core,
    load_amazon_reviews,
    load_path,
    parse_price,
)
from lumenrec.data.registry import load_dataset
from lumenrec.data.types import Item
from lumenrec.errors import ConfigError, DataFormatError


def write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    return path


def review(user: str, asin: str, t: int, rating: float = 5.0, text: str = "", **extra) -> str:
    return json.dumps({"reviewerID": user, "asin": asin, "overall": rating, "reviewText": text or f"{user} on {asin}",
                       "summary": "s", "unixReviewTime": t, **extra})


def full_grid(users: int = 5, items: int = 5) -> list[str]:
    """Every user reviews every item: survives 5-core."""
    return [review(f"U{u}", f"I{i}", 1000 * u + i) for u in range(users) for i in range(items)]


def meta_2014(asin: str, title: str, **kw) -> str:
    # repr() of a dict is a Python literal with single quotes: what the 2014 meta files hold
    return repr({"asin": asin, "title": title, **kw})


def test_2014_round_trip_python_literal_meta(tmp_path):
    write_gz(tmp_path / "reviews_Toys_5.json.gz", full_grid())
    meta = [meta_2014(f"I{i}", f"Toy {i}", brand="Acme", price=float(i) + 0.5,
                      categories=[["Toys & Games", "Puzzles", f"Kind {i}"], ["Other"]],
                      description="A 'quoted' toy &amp; more") for i in range(4)]  # I4 has no meta
    meta.append(meta_2014("ZZZ", "never reviewed"))
    write_gz(tmp_path / "meta_Toys.json.gz", meta)
    with pytest.raises(json.JSONDecodeError):
        json.loads(meta[0])  # the meta really is not JSON

    ds = load_path(tmp_path)
    assert ds.info["format"] == "amazon-2014" and ds.info["category"] == "Toys"
    assert ds.summary()["users"] == 5 and ds.summary()["items"] == 5 and ds.summary()["interactions"] == 25
    it = ds.catalog.get("I2")
    assert (it.title, it.brand, it.price) == ("Toy 2", "Acme", 2.5)
    assert it.categories == ["Toys & Games", "Puzzles", "Kind 2"]  # the first category path
    assert it.description == "A 'quoted' toy & more"
    assert "ZZZ" not in ds.catalog  # meta-only items are not in the catalogue
    assert ds.catalog.get("I4").title == "item I4"  # placeholder, counted
    assert ds.info["items_without_metadata"] == 1
    s = ds.interactions.user("U3")
    assert [ds.catalog[i].id for i in s.items] == ["I0", "I1", "I2", "I3", "I4"]
    assert s.timestamps == [3000, 3001, 3002, 3003, 3004] and s.ratings == [5.0] * 5
    assert s.reviews[0] == "U3 on I0"


def test_2018_round_trip_json_meta(tmp_path):
    write_gz(tmp_path / "Office_Products_5.json.gz",
             [review(f"U{u}", f"I{i}", 10 * u + i, style={"Color:": " Blue"}) for u in range(5) for i in range(5)])
    write_gz(tmp_path / "meta_Office_Products.json.gz", [json.dumps({
        "asin": f"I{i}", "title": f"<span>Pen</span> {i}", "brand": "Bic", "price": "$12.99" if i else "$1.00 - $3.00",
        "category": ["Office Products", "Writing", "Pens"], "description": ["Smooth ink.", "Pack of 3."]})
        for i in range(5)])
    ds = load_dataset(str(tmp_path / "Office_Products_5.json.gz"))
    assert ds.info["format"] == "amazon-2018" and ds.info["items_without_metadata"] == 0
    assert ds.catalog.get("I3").title == "Pen 3"  # markup stripped
    assert ds.catalog.get("I3").price == 12.99 and ds.catalog.get("I0").price == 1.0
    assert ds.catalog.get("I3").categories == ["Office Products", "Writing", "Pens"]
    assert ds.catalog.get("I3").description == "Smooth ink. Pack of 3."
    assert len(ds.interactions) == 5


def test_chronological_sort_is_stable(tmp_path):
    lines = [review("U", "x", 300), review("U", "y", 100), review("U", "z", 200), review("U", "w", 100)]
    write_gz(tmp_path / "reviews_T_5.json.gz", lines)
    ds = load_amazon_reviews(tmp_path / "reviews_T_5.json.gz", config=AmazonLoadConfig(k=0))
    s = ds.interactions.user("U")
    assert [ds.catalog[i].id for i in s.items] == ["y", "w", "z", "x"]  # ties keep file order
    assert s.timestamps == [100, 100, 200, 300]


def test_dedupe_keeps_earliest(tmp_path):
    write_gz(tmp_path / "reviews_T_5.json.gz", [review("U", "a", 5), review("U", "b", 2), review("U", "a", 1)])
    ds = load_amazon_reviews(tmp_path / "reviews_T_5.json.gz", config=AmazonLoadConfig(k=0, dedupe=True))
    s = ds.interactions.user("U")
    assert [ds.catalog[i].id for i in s.items] == ["a", "b"] and s.timestamps == [1, 2]
    assert ds.info["duplicates_dropped"] == 1


def _tiny(seqs: dict[str, list[str]]):
    events = {u: [{"item": x, "time": t, "rating": 1.0, "text": f"{u}{x}"} for t, x in enumerate(s)] for u, s in seqs.items()}
    items = {x: Item(x, f"t{x}") for s in seqs.values() for x in s}
    return build_dataset("tiny", events, items, {})


def test_k_core_iterates_to_a_fixed_point():
    # k=2. One pass would only drop u4; iterating drops d, then u3, then c.
    ds = _tiny({"u1": ["a", "b", "c"], "u2": ["a", "b"], "u3": ["c", "d"], "u4": ["d"]})
    out = k_core(ds, 2)
    got = {s.user_id: [out.catalog[i].id for i in s.items] for s in out.interactions}
    assert got == {"u1": ["a", "b"], "u2": ["a", "b"]}
    assert out.catalog.ids == ["a", "b"]
    assert out.interactions.user("u1").reviews == ["u1a", "u1b"]  # aligned fields follow their items
    assert out.interactions.user("u1").timestamps == [0, 1]
    assert out.info["k_core"]["users_after"] == 2 and out.info["k_core"]["items_after"] == 2
    assert k_core(ds, 1).summary()["interactions"] == 8  # k=1 keeps everything
    assert k_core(ds, 3).summary()["users"] == 0
    with pytest.raises(ConfigError):
        k_core(ds, -1)


def test_default_5_core_on_raw_files(tmp_path):
    lines = full_grid() + [review("lonely", "I0", 1), review("U0", "rare", 99999)]
    write_gz(tmp_path / "reviews_T_5.json.gz", lines)
    ds = load_path(tmp_path)
    assert "lonely" not in {s.user_id for s in ds.interactions} and "rare" not in ds.catalog
    assert ds.info["k_core"]["k"] == 5
    assert load_path(tmp_path, config=AmazonLoadConfig(k=0)).summary()["users"] == 6


def test_bad_line_names_file_and_line(tmp_path):
    lines = full_grid()
    lines.insert(3, '{"reviewerID": "U9", "asin": ')  # line 4: broken JSON
    p = write_gz(tmp_path / "reviews_T_5.json.gz", lines)
    with pytest.raises(DataFormatError) as ei:
        load_amazon_reviews(p)
    assert f"{p}:4:" in str(ei.value) and "invalid JSON" in str(ei.value)
    assert ei.value.line == 4


def test_bad_meta_line_names_file_and_line(tmp_path):
    write_gz(tmp_path / "reviews_T_5.json.gz", full_grid())
    m = write_gz(tmp_path / "meta_T.json.gz", [meta_2014("I0", "ok"), "{'asin': 'I1', 'title': oops}"])
    with pytest.raises(DataFormatError) as ei:
        load_path(tmp_path)
    assert f"{m}:2:" in str(ei.value)


def test_skip_bad_counts_and_reasons(tmp_path):
    lines = full_grid()
    lines[2:2] = ["not json", json.dumps({"reviewerID": "U1", "overall": 3, "unixReviewTime": 5}),
                  json.dumps({"reviewerID": "U1", "asin": "I1", "unixReviewTime": "soon"})]
    p = write_gz(tmp_path / "reviews_T_5.json.gz", lines)
    with pytest.raises(DataFormatError):
        load_amazon_reviews(p)
    ds = load_amazon_reviews(p, skip_bad=True)
    assert ds.info["skipped"] == 3
    assert ds.info["skipped_reasons"] == {"invalid JSON": 1, "missing field 'asin'": 1, "bad field 'unixReviewTime'": 1}
    assert [d.split(": ", 1)[0] for d in ds.info["skipped_detail"]] == [f"{p}:3", f"{p}:4", f"{p}:5"]
    assert ds.summary()["interactions"] == 25  # the good records all loaded


def test_item_from_meta_and_price_variants():
    it = item_from_meta({"asin": "A", "categories": [["X", "Y"]], "title": "", "price": None})
    assert it.title == "item A" and it.categories == ["X", "Y"] and it.price is None
    assert parse_price("$1,299.00") == 1299.0 and parse_price("") is None and parse_price("n/a") is None
    assert parse_price(-3) is None and parse_price(float("nan")) is None and parse_price(4) == 4.0


def test_missing_meta_file_gives_placeholders(tmp_path):
    write_gz(tmp_path / "reviews_T_5.json.gz", full_grid())
    ds = load_path(tmp_path)
    assert ds.info["items_without_metadata"] == 5 and ds.catalog.get("I1").title == "item I1"
    assert not any(math.isnan(r) for s in ds.interactions for r in s.ratings)


def test_unrecognized_directory_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataFormatError, match="no supported dataset files"):
        load_path(tmp_path)
