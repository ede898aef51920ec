"""SASRec model: shapes, causality, padding invariance, config validation, retriever wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumenrec.errors import ConfigError
from lumenrec.retriever.base import Query
from lumenrec.retriever.sasrec import PAD, SASRec, SASRecConfig, SASRecRetriever, pad_histories

torch.set_num_threads(1)


def _model(n=30, **kw) -> SASRec:
    torch.manual_seed(0)
    kw = {"max_len": 8, "dim": 16, "num_heads": 2, "num_layers": 2, "dropout": 0.0, **kw}
    return SASRec(SASRecConfig(num_items=n, **kw)).eval()


@pytest.mark.parametrize("field,value", [("num_items", 0), ("dim", -4), ("num_heads", 3), ("dropout", 1.0),
                                         ("max_len", 2.5), ("num_layers", True)])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError) as e:
        SASRecConfig(**{"num_items": 10, "dim": 16, field: value})
    assert e.value.field == field


def test_config_round_trips_through_dict():
    c = SASRecConfig(num_items=7, dim=32, dropout=0.3)
    assert SASRecConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError):
        SASRecConfig.from_dict({**c.to_dict(), "bogus": 1})


def test_pad_histories_maps_indices_left_pads_and_truncates():
    t = pad_histories([np.array([0, 1, 2]), np.array([5]), np.array([], dtype=np.int64)], max_len=4)
    assert t.tolist() == [[1, 2, 3], [0, 0, 6], [0, 0, 0]]  # L = longest history
    t = pad_histories([np.arange(10)], max_len=4)
    assert t.tolist() == [[7, 8, 9, 10]]  # keeps the most recent items, shifted by +1


def test_forward_query_and_score_shapes():
    m = _model(n=30)
    seqs = pad_histories([np.array([1, 2, 3]), np.array([4, 5, 6, 7, 8])], 8)  # (2, 5)
    assert m(seqs).shape == (2, 5, 16)
    assert m.query(seqs).shape == (2, 16)
    assert m.item_embeddings().shape == (30, 16)
    assert m.score(seqs).shape == (2, 30)
    torch.testing.assert_close(m.score(seqs), m.query(seqs) @ m.item_emb.weight[1:].T)
    with pytest.raises(ValueError, match="max_len"):
        m(torch.ones(1, 9, dtype=torch.long))


def test_causal_output_at_t_ignores_later_items():
    m = _model()
    a = torch.tensor([[3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, 4:] = torch.tensor([20, 21])  # change the items after position 3
    ha, hb = m(a), m(b)
    torch.testing.assert_close(ha[0, :4], hb[0, :4], rtol=0, atol=1e-6)
    assert not torch.allclose(ha[0, 4:], hb[0, 4:], atol=1e-3)  # ...and the later positions do see them


def test_padding_is_ignored():
    m = _model()
    seq = [2, 9, 4]
    short = pad_histories([np.array(seq)], 8)  # (1, 3)
    padded = torch.tensor([[PAD] * 5 + [s + 1 for s in seq]])  # (1, 8): same history, more padding
    torch.testing.assert_close(m(short)[0], m(padded)[0, 5:], rtol=0, atol=1e-6)
    assert torch.all(m(padded)[0, :5] == 0)  # padding rows are zero
    # batching with a longer history changes nothing for the short one
    batch = pad_histories([np.array(seq), np.arange(8)], 8)
    torch.testing.assert_close(m.query(batch)[0], m.query(short)[0], rtol=0, atol=1e-6)
    # the padding row of the embedding table is zero and never scored
    assert torch.all(m.item_emb.weight[PAD] == 0)


def test_retriever_scores_match_model_and_index_scorer(tiny_catalog):
    m = _model(n=len(tiny_catalog))
    r = SASRecRetriever(m, tiny_catalog)
    q = Query(history=["p1", "n1", "unknown-id"])
    s = r.score([q, Query(history=["t2"])])
    assert s.shape == (2, 6)
    expected = m.score(pad_histories([np.array([0, 2]), np.array([5])], 8)).detach().numpy()
    np.testing.assert_allclose(s, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(r.as_scorer()([np.array([0, 2]), np.array([5])]), s, rtol=1e-6, atol=1e-6)
    emb = r.query_embedding(["p1", "n1"])
    assert emb.shape == (16,)
    np.testing.assert_allclose(emb @ r.item_embeddings().T, s[0], rtol=1e-5, atol=1e-6)
    ids, scores = r.retrieve(q, k=3)
    assert len(ids) == 3 and "p1" not in ids and "n1" not in ids and list(scores) == sorted(scores, reverse=True)


def test_retriever_rejects_catalogue_of_wrong_size(tiny_catalog):
    with pytest.raises(ValueError, match="6 items"):
        SASRecRetriever(_model(n=5), tiny_catalog)
