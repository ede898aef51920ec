"""The synthetic store: config checks, determinism, structure, conversations, round trip, realism."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lumenrec.data import leave_one_out, load_benchmark_pair, load_conversations, temporal_split
from lumenrec.data.synthetic import KINDS, SyntheticConfig, generate, save_store
from lumenrec.errors import ConfigError

SMALL = dict(num_items=400, num_users=300, num_conversations=60)


@pytest.fixture(scope="module")
def default_store():
    t0 = time.perf_counter()
    ds = generate(SyntheticConfig())
    ds.info["gen_seconds"] = time.perf_counter() - t0
    return ds


@pytest.fixture(scope="module")
def small_store():
    return generate(SyntheticConfig(seed=5, **SMALL))


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("field,value", [
    ("num_items", 10), ("num_users", 0), ("min_seq_len", 2), ("max_seq_len", 3), ("mean_seq_len", 100.0),
    ("complement_prob", 1.5), ("noise_prob", -0.1), ("zipf_exponent", 0.0), ("seed", -1), ("num_brands", 3),
    ("num_items", 3.5), ("end_time", 1546300800),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError) as e:
        SyntheticConfig(**{field: value})
    assert e.value.field == field


def test_config_rejects_probabilities_summing_over_one():
    with pytest.raises(ConfigError, match="sum to"):
        SyntheticConfig(complement_prob=0.6, restock_prob=0.3, upgrade_prob=0.1, noise_prob=0.1)


# ---------------------------------------------------------------- determinism


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path):
    a = save_store(generate(SyntheticConfig(seed=3, **SMALL)), tmp_path / "a")
    b = save_store(generate(SyntheticConfig(seed=3, **SMALL)), tmp_path / "b")
    c = save_store(generate(SyntheticConfig(seed=4, **SMALL)), tmp_path / "c")
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert set(fa) == {"Synthetic.item.json", "Synthetic.inter.json", "Synthetic.time.json", "conversations.jsonl",
                       "synthetic_config.json"}
    assert fa == fb
    for name in ("Synthetic.item.json", "Synthetic.inter.json", "conversations.jsonl"):
        assert fa[name] != fc[name], name


def test_generation_does_not_touch_the_global_rng():
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    generate(SyntheticConfig(seed=1, **SMALL))
    assert np.random.random() == before


# ---------------------------------------------------------------- sizes and sequences


def test_sizes_lengths_and_chronology(default_store):
    cfg = SyntheticConfig()
    ds = default_store
    assert len(ds.catalog) == cfg.num_items
    assert len(ds.interactions) == cfg.num_users
    lens = np.array([len(s) for s in ds.interactions])
    assert lens.min() >= cfg.min_seq_len and lens.max() <= cfg.max_seq_len
    assert 8.5 <= lens.mean() <= 11.5
    for s in ds.interactions:
        assert len(set(s.items)) == len(s.items), "a user buys an item at most once (history items are masked in eval)"
        ts = np.asarray(s.timestamps)
        assert np.all(np.diff(ts) > 0)
        assert cfg.start_time <= ts[0] and ts[-1] <= cfg.end_time
    # purchases spread over the whole range: every quarter of it holds interactions
    all_ts = np.concatenate([s.timestamps for s in ds.interactions])
    hist, _ = np.histogram(all_ts, bins=4, range=(cfg.start_time, cfg.end_time))
    assert hist.min() > 0.05 * len(all_ts)
    split = temporal_split(ds.interactions)
    assert len(split.test) > 0.05 * cfg.num_users and len(split.valid) > 0.05 * cfg.num_users


def test_generation_is_fast(default_store):
    # "well under ~5 s" on an idle core; the bound is loose because the test machine is shared
    assert default_store.info["gen_seconds"] < 30


# ---------------------------------------------------------------- catalogue


def test_catalogue_tree_brands_attributes_prices(default_store):
    cat = default_store.catalog
    leaves = {k.path[2]: k for k in KINDS.values()}
    assert all(len(it.categories) == 3 for it in cat)
    assert {it.category for it in cat} == set(leaves)
    assert len({it.categories[0] for it in cat}) == 2 and len({it.categories[1] for it in cat}) >= 8
    assert len({it.title for it in cat}) == len(cat), "titles are unique"
    for it in cat:
        assert it.brand and it.price is not None and it.price > 0
        assert it.title and it.description and it.description.endswith(".")
        assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in it.attributes.items())
        if "colour" in it.attributes and it.attributes["colour"] != "assorted":
            assert it.attributes["colour"].split()[0] in it.title.lower()
        assert it.attributes.get("pack", "1") in it.title or it.attributes.get("pack") == "1"
    # brands specialise: none sells in more than a handful of leaf categories, most in a few
    per_brand = Counter()
    for b in cat.brands():
        per_brand[b] = len({it.category for it in cat if it.brand == b})
    assert max(per_brand.values()) <= 18 and np.median(list(per_brand.values())) <= 4
    # realistic per-category prices: printers cost far more than pens
    med = {leaf: np.median([it.price for it in cat if it.category == leaf]) for leaf in leaves}
    assert med["Laser Printers"] > 10 * med["Gel Pens"]
    assert med["Inkjet Printers"] > med["Ink Cartridges"] > med["Sticky Notes"] * 1.5


def test_sequences_have_complementary_structure(default_store):
    cat, inter = default_store.catalog, default_store.interactions
    after_printer, fits = 0, 0
    for s in inter:
        for a, b in zip(s.items[:-1], s.items[1:]):
            if cat[a].category == "Inkjet Printers":
                after_printer += 1
                fits += cat[b].category == "Ink Cartridges" and cat[b].attributes["cartridge"] == cat[a].attributes["cartridge"]
    assert after_printer > 30
    assert fits / after_printer > 0.25, "a printer is often followed by ink for that printer"
    pop = inter.popularity()
    top = np.sort(pop)[::-1]
    assert top[: len(top) // 100].sum() / top.sum() > 0.04, "popularity is skewed (top 1% of items)"


# ---------------------------------------------------------------- conversations


_SENT = re.compile(r"[.!?](?:\s|$)")


def _sentences(text: str) -> int:
    return len(_SENT.findall(text.strip()))


def test_conversations_follow_the_regen_format(default_store):
    ds = default_store
    cat = ds.catalog
    assert len(ds.conversations) == 300
    assert len({c.user_id for c in ds.conversations}) == 300
    for c in ds.conversations:
        seq = ds.interactions.user(c.user_id)
        ids = [cat.ids[i] for i in seq.items]
        assert c.history + [c.target] == ids
        assert c.previous_item == c.history[-1] and c.target not in c.history
        assert all(x in cat for x in c.history + [c.target])
        prev, tgt = cat.get(c.previous_item), cat.get(c.target)
        assert prev.categories[:2] == tgt.categories[:2]
        assert [t.kind for t in c.turns] == ["message", "critique"] and all(t.role == "user" for t in c.turns)
        assert tgt.title.lower() not in c.opening.lower() and tgt.title.lower() not in c.critique.lower()
        assert c.meta["difficulty"] in ("easy", "medium", "hard")
        assert 1 <= _sentences(c.narratives.purchase_reason) <= 3, c.narratives.purchase_reason
        assert 1 <= _sentences(c.narratives.endorsement) <= 4, c.narratives.endorsement
        assert 3 <= _sentences(c.narratives.user_summary) <= 5, c.narratives.user_summary
    # varied phrasing, some typos
    assert len({c.critique for c in ds.conversations}) == 300
    assert len({c.opening for c in ds.conversations}) > 100
    n_typo = sum(bool(c.meta["typo"]) for c in ds.conversations)
    assert 10 <= n_typo <= 80
    kinds = Counter(k for c in ds.conversations for k in c.meta["critique_attributes"])
    for k in ("brand", "brand_exclude", "colour", "category", "price_direction"):
        assert kinds[k] >= 10, (k, kinds)


def test_critique_attributes_are_consistent_with_the_target(default_store):
    cat = default_store.catalog
    for c in default_store.conversations:
        prev, tgt = cat.get(c.previous_item), cat.get(c.target)
        cons = c.meta["critique_attributes"]
        assert cons, "every critique carries at least one constraint"
        text = c.critique.lower()
        for key, v in cons.items():
            if key == "brand_exclude":
                assert v != tgt.brand and v == prev.brand
                assert v.lower() in text
            elif key == "brand":
                assert v == tgt.brand and v.lower() in text
            elif key == "category":
                assert v == tgt.category != prev.category
            elif key == "compatible_with":
                assert v == prev.id
            elif key == "price_direction":
                assert (tgt.price < prev.price) if v == "lower" else (tgt.price > prev.price)
            elif key == "pack_direction":
                assert (int(tgt.attributes["pack"]) > int(prev.attributes["pack"])) == (v == "more")
            else:  # colour, pack, point, size, connectivity ...: the target's own attribute value
                assert tgt.attributes.get(key) == v, (key, v, tgt.attributes)
                assert v.lower() in text, (v, text)


def test_narratives_mention_only_brands_of_the_target_and_history(default_store):
    cat = default_store.catalog
    brands = cat.brands()
    pats = {b: re.compile(rf"(?<![\w-]){re.escape(b)}(?![\w-])") for b in brands}
    checked = 0
    for c in default_store.conversations:
        allowed = {cat.get(c.target).brand} | {cat.get(h).brand for h in c.history}
        for text in c.narratives.as_dict().values():
            assert text and text[0].isupper() and text.rstrip()[-1] in ".!"
            assert "  " not in text and " ." not in text
            for b, pat in pats.items():
                if pat.search(text):
                    assert b in allowed, (b, text)
                    checked += 1
        # the endorsement speaks about the target itself
        assert cat.get(c.target).title.split(",")[0].split(" (")[0] in c.narratives.endorsement
    assert checked > 300


# ---------------------------------------------------------------- round trip, registry, CLI


def test_save_store_round_trip(small_store, tmp_path):
    out = save_store(small_store, tmp_path / "store")
    back = load_benchmark_pair(out)
    assert back.catalog.ids == small_store.catalog.ids
    assert back.catalog.items == small_store.catalog.items
    assert [(s.user_id, s.items, s.timestamps) for s in back.interactions] == \
           [(s.user_id, s.items, s.timestamps) for s in small_store.interactions]
    convs = load_conversations(out / "conversations.jsonl", back.catalog)
    assert [c.to_dict() for c in convs] == [c.to_dict() for c in small_store.conversations]
    assert convs == small_store.conversations
    assert back.info["items_without_metadata"] == 0


def test_load_dataset_by_name_and_by_path(tmp_path):
    from lumenrec.data.registry import load_dataset

    ds = load_dataset("synthetic:num_items=400,num_users=200,num_conversations=20,seed=2")
    assert ds.summary()["items"] == 400 and ds.summary()["users"] == 200 and len(ds.conversations) == 20
    save_store(ds, tmp_path)
    again = load_dataset(str(tmp_path))
    assert len(again.conversations) == 20 and again.interactions.has_timestamps


def test_cli_synth_writes_a_loadable_store(tmp_path, capsys):
    from lumenrec.cli import main

    rc = main(["data", "synth", "--out", str(tmp_path / "s"), "--seed", "7", "--num-items", "400", "--num-users", "150"])
    assert rc == 0
    assert '"users": 150' in capsys.readouterr().out
    ds = load_benchmark_pair(tmp_path / "s")
    assert len(ds.catalog) == 400 and len(ds.interactions) == 150


# ---------------------------------------------------------------- realism


def test_a_sequential_model_clearly_beats_popularity(default_store):
    """The issue's realism bar: a retriever trained on the store beats popularity by a wide margin,
    popularity beats random (the skew is real), and the task is not trivial."""
    from lumenrec.eval import MarkovScorer, PopularityScorer, evaluate

    split = leave_one_out(default_store.interactions)
    pop = evaluate(PopularityScorer(split.train_full, split.num_items), split.test, ks=(10,))
    markov = evaluate(MarkovScorer(split.train_full, split.num_items), split.test, ks=(10,))
    random_recall = 10 / split.num_items
    print(f"\nsynthetic default store: popularity R@10={pop['recall@10']:.4f} NDCG@10={pop['ndcg@10']:.4f}; "
          f"markov R@10={markov['recall@10']:.4f} NDCG@10={markov['ndcg@10']:.4f}; random R@10={random_recall:.4f}")
    assert markov["ndcg@10"] >= 3 * pop["ndcg@10"]
    assert pop["recall@10"] >= 3 * random_recall
    assert 0.1 <= markov["recall@10"] <= 0.6
