"""The llama.cpp state cache bounds the memory it really holds (KV bytes + the logits copy of each state)."""

from __future__ import annotations

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")


def _state(first_token: int, kv_bytes: int, logits_rows: int = 64, vocab: int = 1000):
    ids = np.array([first_token, 1, 2], dtype=np.intc)
    return llama_cpp.llama.LlamaState(input_ids=ids, scores=np.zeros((logits_rows, vocab), dtype=np.single), n_tokens=3,
                                      llama_state=b"\0" * kv_bytes, llama_state_size=kv_bytes, seed=0)


def test_the_logits_copy_counts_against_the_capacity():
    from lumenrec.agent.llm.llamacpp import state_cache

    logits = 64 * 1000 * 4  # 256 KB per state
    cache = state_cache(3 * (logits + 1000) + 100)  # room for three states of 1 KB KV each
    plain = llama_cpp.LlamaRAMCache(capacity_bytes=3 * (logits + 1000) + 100)
    for t in range(10):
        cache[(t, 1, 2)] = _state(t, 1000)
        plain[(t, 1, 2)] = _state(t, 1000)
    assert len(cache.cache_state) == 3 and cache.cache_size <= cache.capacity_bytes
    assert len(plain.cache_state) == 10  # llama-cpp-python's own cache counts only the 1 KB KV of each
    assert (9, 1, 2) in cache and (0, 1, 2) not in cache  # the oldest went first
