"""A tiny random causal LM and a byte-level tokenizer, built offline in a few milliseconds.

Tests of models that wrap a causal LM (generative LUMEN) run on this instead of SmolLM2.
"""

from __future__ import annotations

from pathlib import Path


def byte_tokenizer():
    """A byte-level BPE tokenizer without merges (256 byte symbols + '<eos>'): any text round-trips."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<eos>"] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>")


def tiny_llama(vocab_size: int, seed: int = 0):
    """A 2-layer, 32-wide Llama with tied embeddings, initialised from `seed`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)


def save_tiny_backbone(directory: str | Path) -> Path:
    """A HF model directory (config, weights, tokenizer) of the tiny Llama, for code that loads by path."""
    directory = Path(directory)
    tok = byte_tokenizer()
    tiny_llama(len(tok)).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory
