"""ILM item encoder: Q-Former shapes, each contrastive loss, alignment on a toy set, checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumenrec.data.types import Catalog, Item
from lumenrec.errors import ConfigError
from lumenrec.retriever.base import Query
from lumenrec.retriever.ilm import ILMConfig, ILMEncoder, ILMRetriever, ItemQFormer, info_nce

D = 16  # small text width keeps the tests fast; the real one is 384


def _toy(n=40, seed=0):
    """n items: random CF vectors, 3 random text-field vectors, full-text target = their normalised sum."""
    g = np.random.default_rng(seed)
    cf = g.normal(size=(n, 8)).astype(np.float32)
    text = g.normal(size=(n, 3, D)).astype(np.float32)
    text /= np.linalg.norm(text, axis=2, keepdims=True)
    mask = np.ones((n, 3), dtype=bool)
    mask[::4, 2] = False  # some items lack a description
    target = (text * mask[..., None]).sum(1)
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    seqs = [g.permutation(n)[:6] for _ in range(30)]
    return [str(i) for i in range(n)], cf, text, mask, target.astype(np.float32), seqs


def _cfg(**kw):
    base = dict(num_queries=4, dim=32, num_layers=1, num_heads=4, text_dim=D, epochs=40, batch_size=20, lr=5e-3,
                progress=False, seed=0, dropout=0.0)
    base.update(kw)
    return ILMConfig(**base)


def test_qformer_shapes_and_unit_norm():
    m = ItemQFormer(_cfg(), cf_dim=8)
    out = m(torch.randn(5, 8), torch.randn(5, 3, D), torch.ones(5, 3, dtype=torch.bool))
    assert out.shape == (5, D)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)
    assert m(torch.randn(2, 8)).shape == (2, D)  # CF token alone (the UI "user as an item")
    with pytest.raises(ValueError, match="cf must be"):
        m(torch.randn(2, 7))


def test_text_skip_starts_at_the_mean_of_the_present_fields():
    m = ItemQFormer(_cfg(text_skip=True), cf_dim=8)
    text = torch.randn(4, 3, D)  # (B, T, D)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=torch.bool)
    out = m(torch.randn(4, 8), text, mask)  # (B, D): untrained, the zero-initialised projection adds nothing
    want = (text * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(out, torch.nn.functional.normalize(want, dim=-1))
    assert not torch.allclose(ItemQFormer(_cfg(), cf_dim=8)(torch.randn(4, 8), text, mask), out)  # default: no skip


def test_info_nce_prefers_aligned_pairs():
    a = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    assert info_nce(a, a, 0.1) < info_nce(a, a.roll(1, 0), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(a, a, 0.0)


def test_itc_decreases_and_aligns_items_with_their_text():
    ids, cf, text, mask, target, _ = _toy()
    enc = ILMEncoder(_cfg(use_ii=False, use_ui=False), ids, cf, text, mask, target)
    before = enc.item_vectors()
    hist = enc.fit()
    assert hist[-1]["itc"] < 0.5 * hist[0]["itc"]
    v = enc.item_vectors()
    acc = float((np.argmax(v @ target.T, 1) == np.arange(len(ids))).mean())
    acc0 = float((np.argmax(before @ target.T, 1) == np.arange(len(ids))).mean())
    assert acc >= 0.8 and acc > acc0  # chance is 1/40
    assert set(hist[-1]) == {"epoch", "itc"}


@pytest.mark.parametrize("switch", [dict(use_itc=False, use_ui=False), dict(use_itc=False, use_ii=False),
                                    dict()])
def test_each_loss_switch_trains_only_its_losses(switch):
    ids, cf, text, mask, target, seqs = _toy()
    enc = ILMEncoder(_cfg(epochs=6, **switch), ids, cf, text, mask, target)
    w0 = {k: v.clone() for k, v in enc.model.state_dict().items()}
    hist = enc.fit(seqs)
    want = {n for n in ("itc", "ii", "ui") if switch.get(f"use_{n}", True)}
    assert set(hist[-1]) - {"epoch"} == want
    assert any(not torch.equal(w0[k], v) for k, v in enc.model.state_dict().items())


def test_ii_brings_consecutive_items_together():
    ids, cf, text, mask, target, _ = _toy()
    pairs = [np.array([2 * i, 2 * i + 1]) for i in range(20)]  # item 2i always followed by 2i+1
    enc = ILMEncoder(_cfg(use_itc=False, use_ui=False, epochs=100), ids, cf, text, mask, target)

    def acc() -> float:
        v = enc.item_vectors()
        sims = v[0::2] @ v[1::2].T  # (20, 20): row i should peak at column i
        return float((np.argmax(sims, 1) == np.arange(20)).mean())

    before = acc()
    enc.fit(pairs)
    assert acc() >= 0.5 and acc() > before + 0.3  # chance is 1/20


def test_ii_without_sequences_is_a_config_error():
    ids, cf, text, mask, target, _ = _toy()
    with pytest.raises(ConfigError, match="use_ii"):
        ILMEncoder(_cfg(), ids, cf, text, mask, target).fit(None)


def test_checkpoint_round_trip_identical_vectors(tmp_path):
    ids, cf, text, mask, target, seqs = _toy()
    enc = ILMEncoder(_cfg(epochs=2), ids, cf, text, mask, target)
    enc.fit(seqs)
    enc.save(tmp_path / "ilm")
    back = ILMEncoder.load(tmp_path / "ilm")
    assert back.item_ids == ids and back.config == enc.config
    np.testing.assert_array_equal(back.item_vectors(), enc.item_vectors())
    np.testing.assert_array_equal(back.user_vector(np.array([1, 2])), enc.user_vector(np.array([1, 2])))


def test_config_validation():
    with pytest.raises(ConfigError, match="num_heads"):
        ILMConfig(dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="use_itc"):
        ILMConfig(use_itc=False, use_ii=False, use_ui=False)
    with pytest.raises(ConfigError, match="temperature"):
        ILMConfig(temperature=0)


class _FakeEncoder:
    def __init__(self, vecs: dict[str, np.ndarray]):
        self.vecs = vecs

    def encode(self, texts):
        return np.stack([self.vecs[t] for t in texts])


def test_ilm_retriever_uses_text_or_history():
    cat = Catalog([Item(str(i), f"item {i}") for i in range(4)])
    V = np.eye(4, dtype=np.float32)
    r = ILMRetriever(cat, V, _FakeEncoder({"want 2": V[2]}))
    ids, _ = r.retrieve(Query(history=["0"], text="want 2"), k=1)
    assert ids == ["2"]
    s = r.score([Query(history=["3"])])
    assert int(np.argmax(s[0])) == 3  # no text: the history mean


def test_cli_registers_ilm_and_lumen_train():
    from lumenrec.cli import build_parser

    a = build_parser().parse_args(["ilm", "train", "--data", "office-2014", "--seq-checkpoint", "s", "--out", "o",
                                   "--losses", "itc,ii"])
    assert a.losses == "itc,ii" and callable(a.func)
    b = build_parser().parse_args(["lumen", "train", "--data", "x", "--seq-checkpoint", "s", "--ilm-checkpoint", "i",
                                   "--out", "o", "--loss", "warp"])
    assert b.loss == "warp" and callable(b.func)
