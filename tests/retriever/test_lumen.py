"""LUMEN-style retriever: the critique carries the signal, negations push brands down, one model serves both cases."""

from __future__ import annotations

import numpy as np
import pytest

from lumenrec.data.types import Catalog, Item
from lumenrec.errors import ConfigError
from lumenrec.retriever.base import Query
from lumenrec.retriever.lumen import BrandLexicon, LumenConfig, LumenRetriever, critique_focus

D = 16
BRANDS = ["Fellowes", "Avery", "Wilson Jones", "3M", "BIC"]


class FakeEncoder:
    """Critique 'want <k>' -> item k's text vector plus noise (the critique determines the target)."""

    def __init__(self, T: np.ndarray, seed: int = 0):
        self.T, self.g = T, np.random.default_rng(seed)

    def encode(self, texts):
        out = []
        for t in texts:
            k = int(t.split()[1])
            v = self.T[k] + 0.3 * self.g.normal(size=self.T.shape[1])
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


def _world(n=30, seed=0):
    g = np.random.default_rng(seed)
    cat = Catalog([Item(str(i), f"thing {i}", BRANDS[i % len(BRANDS)], ["Office", f"type{i % 3}"]) for i in range(n)])
    T = g.normal(size=(n, D)).astype(np.float32)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    V = T + 0.2 * g.normal(size=(n, D)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    return cat, V, T, g


def _cfg(**kw):
    base = dict(epochs=30, batch_size=64, lr=5e-3, hidden=32, progress=False, seed=0)
    base.update(kw)
    return LumenConfig(**base)


def _triples(g, n_items, m):
    hist = [g.choice(n_items, size=3, replace=False) for _ in range(m)]
    tgt = [int(g.choice([j for j in range(n_items) if j not in h])) for h in hist]
    return hist, [f"want {t}" for t in tgt], tgt


def _recall_at1(r, hist, texts, tgt):
    s = r.score_indices(hist, texts)
    for i, h in enumerate(hist):
        s[i, h] = -np.inf
    return float((np.argmax(s, 1) == np.asarray(tgt)).mean())


def test_critique_beats_no_critique_when_it_determines_the_target():
    cat, V, T, g = _world()
    r = LumenRetriever(cat, V, T, text_encoder=FakeEncoder(T), config=_cfg())
    hist, texts, tgt = _triples(g, len(cat), 600)
    hist_t, texts_t, tgt_t = _triples(g, len(cat), 200)
    r.fit(hist, texts, tgt)
    with_c = _recall_at1(r, hist_t, texts_t, tgt_t)
    without = _recall_at1(r, hist_t, [None] * len(hist_t), tgt_t)
    assert with_c >= 0.6 and with_c > 3 * max(without, 1 / 30)
    assert r.history[-1]["loss"] < r.history[0]["loss"]


def test_score_mixes_queries_with_and_without_text_and_masks_history():
    cat, V, T, g = _world()
    r = LumenRetriever(cat, V, T, text_encoder=FakeEncoder(T), config=_cfg(epochs=2))
    s = r.score([Query(history=["1", "2"], text="want 5"), Query(history=["3"])])
    assert s.shape == (2, len(cat)) and np.isfinite(s).all()
    ids, _ = r.retrieve(Query(history=["5"], text="want 5"), k=len(cat))
    assert "5" not in ids  # history masked by BaseRetriever.retrieve
    assert 5 in np.argsort(-s[0])[:3]  # untrained tower starts as "query = critique text" (noisy stand-in encoder)


def test_brand_lexicon_splits_wanted_and_negated():
    lex = BrandLexicon(BRANDS)
    pos, neg = lex.mentions("not Fellowes again, something from Avery")
    assert [lex.brands[i] for i in pos] == ["avery"] and [lex.brands[i] for i in neg] == ["fellowes"]
    pos, neg = lex.mentions("I'd prefer wilson jones over 3m")
    assert [lex.brands[i] for i in pos] == ["wilson jones"] and [lex.brands[i] for i in neg] == ["3m"]
    assert lex.mentions("nothing here") == ([], [])
    assert lex.mentions("the bic pens broke, try avery") == ([lex.id_of("Avery")], [lex.id_of("BIC")])


def test_negated_brand_is_pushed_down_after_training():
    cat, V, T, g = _world(n=30, seed=1)
    T[1::2] = T[0::2] + 0.05 * g.normal(size=T[0::2].shape)  # near-duplicate pairs (2k, 2k+1), different brands
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    V = T.copy()

    class BrandText(FakeEncoder):  # MiniLM stand-in that ignores everything after the comma (the negation)
        def encode(self, texts):
            return super().encode([t.split(",")[0] for t in texts])

    def cases(m):
        hist, texts, tgt, other = [], [], [], []
        for _ in range(m):  # target = one of two items a, a+1; the critique names a and says which brand NOT to take
            a = 2 * int(g.integers(0, 15))
            t = int(g.choice([a, a + 1]))
            o = a + 1 if t == a else a
            hist.append(g.choice([j for j in range(30) if j not in (a, a + 1)], size=2, replace=False))
            texts.append(f"want {a}, not {cat[o].brand} again")
            tgt.append(t)
            other.append(o)
        return hist, texts, tgt, other

    r = LumenRetriever(cat, V, T, text_encoder=BrandText(T), config=_cfg(epochs=30))
    hist, texts, tgt, _ = cases(600)
    r.fit(hist, texts, tgt)
    hist, texts, tgt, other = cases(200)
    s = r.score_indices(hist, texts)
    rows = np.arange(len(tgt))
    assert float((s[rows, tgt] > s[rows, other]).mean()) >= 0.9  # text alone would get ~0.5
    assert r.mix_weights()["critique"]["brand_neg"] < 0


@pytest.mark.parametrize("focus", [True, False])
def test_checkpoint_round_trip(tmp_path, focus):
    cat, V, T, g = _world()
    r = LumenRetriever(cat, V, T, text_encoder=FakeEncoder(T, seed=1), config=_cfg(epochs=2, focus=focus),
                       popularity=np.arange(30.0))
    hist, texts, tgt = _triples(g, len(cat), 100)
    r.fit(hist, texts, tgt)
    r.save(tmp_path / "lumen")
    back = LumenRetriever.load(tmp_path / "lumen", cat, text_encoder=FakeEncoder(T, seed=1))
    r._encoder = FakeEncoder(T, seed=1)
    np.testing.assert_allclose(back.score_indices(hist[:5], texts[:5]), r.score_indices(hist[:5], texts[:5]), rtol=1e-5, atol=1e-5)
    assert back.mix_weights() == r.mix_weights()


def test_config_and_input_errors():
    with pytest.raises(ConfigError, match="loss"):
        LumenConfig(loss="hinge")
    with pytest.raises(ConfigError, match="critique_dropout"):
        LumenConfig(critique_dropout=1.0)
    cat, V, T, _ = _world()
    with pytest.raises(ValueError, match="ilm_vectors"):
        LumenRetriever(cat, V[:5], T)
    r = LumenRetriever(cat, V, T, config=_cfg())
    with pytest.raises(ValueError, match="same non-zero length"):
        r.fit([np.array([1])], ["want 1", "want 2"], [3])


def test_transition_matrix_counts_following_items():
    from lumenrec.retriever.lumen import transition_matrix

    M = transition_matrix([np.array([0, 1, 2]), np.array([0, 1])], 4, window=1, backward=0.0)
    assert M.shape == (4, 4) and M[0, 1] == pytest.approx(2 / 3) and M[1, 2] == pytest.approx(1 / 2)
    assert M[2].sum() == 0 and M[0, 0] == 0


def test_cooccurrence_prior_ranks_the_usual_next_item_without_critique():
    from lumenrec.retriever.lumen import transition_matrix

    cat, V, T, g = _world()
    seqs = [np.array([i, (i + 7) % 30]) for i in range(30) for _ in range(3)]  # i is always followed by i+7
    r = LumenRetriever(cat, V, T, text_encoder=FakeEncoder(T), config=_cfg(epochs=2),
                       transitions=transition_matrix(seqs, 30))
    s = r.score_indices([np.array([3]), np.array([10])], [None, None])
    assert list(np.argmax(s, 1)) == [10, 17]


def test_critique_focus_keeps_the_closing_need():
    assert critique_focus("toner's handled. my plastic ruler is all chewed up, want a metal one") == \
        "my plastic ruler is all chewed up, want a metal one"
    # a short last sentence is joined with the one before until the tail has >= 6 words
    assert critique_focus("not sold on the samsung. looking for a mono laser. not HP either") == \
        "looking for a mono laser. not HP either"
    one = "matching color XL for my canon now"
    assert critique_focus(one) == one  # one sentence: the whole critique
    assert critique_focus("ink's sorted... what's cheaper than bubble mailers for shipping?") == \
        "what's cheaper than bubble mailers for shipping?"
    assert critique_focus("") == ""


class OpeningEncoder:
    """'had j. want k' -> the normalised sum of T[j] and T[k] (the opening talks about another item)."""

    def __init__(self, T: np.ndarray):
        self.T = T

    def encode(self, texts):
        out = []
        for t in texts:
            v = sum(self.T[int(w)] for w in t.replace(".", " ").split() if w.isdigit())
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


def test_focus_term_finds_the_need_that_the_opening_dilutes():
    """The whole critique points at two items equally; only its closing sentence names the target."""
    cat, V, T, g = _world(n=40)
    n = len(cat)
    hist, tgt, texts = [], [], []
    for _ in range(500):
        h = g.choice(n, size=3, replace=False)
        j, k = g.choice([x for x in range(n) if x not in h], size=2, replace=False)
        hist.append(h), tgt.append(int(k)), texts.append(f"had {j}. want {k}")
    enc = OpeningEncoder(T)
    scores = {}
    for focus in (True, False):
        r = LumenRetriever(cat, V, T, text_encoder=enc, config=_cfg(focus=focus, focus_min_words=2, critique_dropout=0.0))
        r.fit(hist[:400], texts[:400], tgt[:400])
        scores[focus] = _recall_at1(r, hist[400:], texts[400:], tgt[400:])
        if focus:
            assert r.mix_weights()["critique"]["focus"] > 0
    assert scores[True] >= 0.9 and scores[False] <= 0.7, scores  # without the focus it is ~a coin flip
