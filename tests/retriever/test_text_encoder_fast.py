"""The fast small-batch query paths of TextEncoder (direct torch, ONNX Runtime) reproduce
sentence-transformers' `model.encode` (real all-MiniLM-L6-v2, offline)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lumenrec.errors import ConfigError, MissingExtraError
from lumenrec.retriever import text_encoder as te
from lumenrec.retriever.text_encoder import TextEncoder, TextEncoderConfig

# Varied shopper-like texts: short, long (truncated at 256 tokens), padded batches, odd whitespace,
# punctuation, non-ASCII, empty.
TEXTS = [
    "black ink cartridge, not HP", "a cheaper stapler", "  sticky notes in bright colours  ", "x", "",
    "gel pens that do not smudge", "I want something like my last binder but bigger and in blue, under $20",
    "Füller mit blauer Tinte — pas cher", "label maker tape 12mm!!!", "envelopes\tfor\nmailing invoices",
    " ".join(["a very long description of a sturdy recycled printer paper ream"] * 40),
    "whiteboard", "desk organiser with drawers for pens, clips and sticky notes",
]


def _reference(tmp_path) -> np.ndarray:
    enc = TextEncoder(TextEncoderConfig(cache_dir=str(tmp_path), query_backend="sentence-transformers"))
    return enc.encode(TEXTS)  # (n, d)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_fast_path_equals_sentence_transformers(backend, tmp_path):
    if backend == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    ref = _reference(tmp_path)
    enc = TextEncoder(TextEncoderConfig(cache_dir=str(tmp_path), query_backend=backend, num_threads=1))
    assert enc.query_backend_in_use == backend
    one_by_one = np.concatenate([enc.encode(t) for t in TEXTS])  # the serving pattern: one text per call
    batched = enc.encode(TEXTS, batch_size=5)  # padded batches through the same path
    assert np.abs(one_by_one - ref).max() < 1e-4
    assert np.abs(batched - ref).max() < 1e-4
    # and it is not trivially equal to something else: the texts differ from each other
    assert np.abs(ref[0] - ref[1]).max() > 1e-2


def test_large_batches_always_use_model_encode(tmp_path, monkeypatch):
    enc = TextEncoder(TextEncoderConfig(cache_dir=str(tmp_path), query_backend="torch", query_batch_max=2))
    calls = []
    monkeypatch.setattr(enc, "_encode_torch", lambda texts, bs: calls.append(len(texts)) or np.ones((len(texts), 384)))
    enc.encode(["a", "b"])
    assert calls == [2]
    v = enc.encode(["a", "b", "c"])  # above query_batch_max: model.encode, not the patched fast path
    assert calls == [2] and v.shape == (3, 384) and not np.allclose(v, v[0])


def test_auto_falls_back_to_torch_without_onnxruntime(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    enc = TextEncoder(TextEncoderConfig(cache_dir=str(tmp_path), query_backend="auto"))
    assert enc.query_backend_in_use == "torch"
    strict = TextEncoder(TextEncoderConfig(cache_dir=str(tmp_path), query_backend="onnx"))
    with pytest.raises(MissingExtraError, match="onnxruntime"):
        strict.encode("pen")


def test_bad_onnx_graph_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    enc = TextEncoder(TextEncoderConfig(cache_dir=str(tmp_path), query_backend="auto"))
    path = enc.onnx_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx graph")
    assert enc.query_backend_in_use == "torch"  # auto: logged, torch path instead
    ref = _reference(tmp_path)[:3]
    assert np.abs(enc.encode(TEXTS[:3]) - ref).max() < 1e-4
    strict = TextEncoder(TextEncoderConfig(cache_dir=str(tmp_path), query_backend="onnx"))
    with pytest.raises(Exception):
        strict.encode("pen")
    te._BAD_ONNX.discard(str(path))


def test_onnx_graph_differing_from_model_is_refused(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    enc = TextEncoder(TextEncoderConfig(cache_dir=str(tmp_path / "other"), query_backend="onnx", num_threads=1))
    monkeypatch.setattr(te, "_FAST_PATH_TOL", 0.0)  # nothing can be within 0: the check must refuse
    with pytest.raises(te.FastPathMismatch):
        enc.encode("pen")
    te._BAD_ONNX.discard(str(enc.onnx_path()))


def test_query_backend_config_validation():
    with pytest.raises(ConfigError, match="query_backend"):
        TextEncoderConfig(query_backend="tensorrt")
    with pytest.raises(ConfigError, match="query_batch_max"):
        TextEncoderConfig(query_batch_max=-1)


def test_light_tokenizer_matches_sentence_transformers():
    """The tokenizer.json path that lets a server skip the sentence-transformers import tokenizes exactly
    as sentence-transformers does: stripping, padding, and truncation at max_seq_length."""
    from lumenrec.retriever.text_encoder import TextEncoder, _light_tokenizer

    enc = TextEncoder()
    light = _light_tokenizer(enc.model_path)
    assert light is not None
    texts = ["  Sticky notes  ", "x", "black ink cartridge, not HP", "word " * 400]
    got, ref = light(texts), enc._model().tokenize(texts)
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        assert got[k].tolist() == ref[k].tolist(), k
    assert got["input_ids"].shape[1] == 256  # truncated like the model
