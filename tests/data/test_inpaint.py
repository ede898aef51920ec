"""REGEN-style inpainting: record format, LLM path and fallbacks, resumability, torn-line recovery."""

from __future__ import annotations

import json

import pytest

from lumenrec.data.inpaint import (InpaintConfig, Inpainter, inpaint_to_file, scan_done_users, similar)
from lumenrec.data import Catalog, Item, UserSequence, load_conversations
from lumenrec.errors import ConfigError, DataFormatError, LLMError


@pytest.fixture(scope="module")
def store():
    from lumenrec.data.synthetic import SyntheticConfig, generate

    return generate(SyntheticConfig(num_items=200, num_users=40, num_conversations=3, seed=1))


def _strip_time(lines):
    out = []
    for ln in lines:
        d = json.loads(ln)
        d["provenance"].pop("created_at")
        out.append(d)
    return out


def test_similar_uses_category_prefix(tiny_catalog):
    p1, n1 = tiny_catalog.get("p1"), tiny_catalog.get("n1")
    assert similar(p1, n1, 1)  # both under "Office"
    assert not similar(p1, n1, 2)  # Writing vs Paper
    assert not similar(p1, Item("x", "no category"), 1)


def test_config_is_validated():
    with pytest.raises(ConfigError, match="critique_positions"):
        InpaintConfig(critique_positions="some")
    with pytest.raises(ConfigError, match="similar_prefix"):
        InpaintConfig(similar_prefix=0)


def test_offline_inpaint_of_synthetic_store_loads_as_conversations(store, tmp_path):
    inp = Inpainter(store.catalog)
    seqs = inp.eligible(store)
    conv_users = {c.user_id for c in store.conversations}
    assert conv_users and not conv_users & {s.user_id for s in seqs}  # dev-style users excluded
    out = tmp_path / "conv.jsonl"
    summary = inpaint_to_file(inp, seqs, out, limit=12, progress=False)
    assert summary.written == 12 and summary.total == 12
    convs = load_conversations(out, store.catalog)
    assert len(convs) == 12
    for c, s in zip(convs, seqs[:12]):
        ids = [store.catalog[i].id for i in s.items]
        assert c.user_id == s.user_id and c.target == ids[-1] and c.history == ids[:-1]
        assert c.previous_item == ids[-2]
        assert c.opening and all(c.narratives.as_dict().values())
        prov = c.meta["provenance"]
        assert prov["generator"] == "offline" and prov["prompt_version"].startswith("inpaint-v1")
        assert prov["created_at"]
        # a critique for exactly the similar consecutive pairs
        pairs = [t for t in range(1, len(ids)) if ids[t - 1] != ids[t]
                 and similar(store.catalog.get(ids[t - 1]), store.catalog.get(ids[t]))]
        assert [x["position"] for x in c.meta["critiques"]] == pairs
        last_similar = similar(store.catalog.get(ids[-2]), store.catalog.get(ids[-1]))
        assert (c.critique is not None) == last_similar
        if c.critique:
            assert c.turns[-1].kind == "critique" and c.critique == c.meta["critiques"][-1]["text"]


def test_resume_after_crash_gives_same_file(store, tmp_path):
    seqs = Inpainter(store.catalog).eligible(store)[:10]
    ref = tmp_path / "ref.jsonl"
    inpaint_to_file(Inpainter(store.catalog), seqs, ref, progress=False)

    class Crashing(Inpainter):
        calls = 0

        def record(self, seq):
            Crashing.calls += 1
            if Crashing.calls == 6:
                raise KeyboardInterrupt  # Ctrl-C in the middle of the run
            return super().record(seq)

    out = tmp_path / "resumed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        inpaint_to_file(Crashing(store.catalog), seqs, out, progress=False)
    assert len(out.read_text().splitlines()) == 5  # everything before the crash is on disk
    s = inpaint_to_file(Inpainter(store.catalog), seqs, out, progress=False)
    assert s.skipped_done == 5 and s.written == 5
    assert _strip_time(out.read_text().splitlines()) == _strip_time(ref.read_text().splitlines())
    # a third run has nothing to do
    assert inpaint_to_file(Inpainter(store.catalog), seqs, out, progress=False).written == 0


def test_torn_last_line_is_rewritten(store, tmp_path):
    seqs = Inpainter(store.catalog).eligible(store)[:4]
    out = tmp_path / "c.jsonl"
    inpaint_to_file(Inpainter(store.catalog), seqs[:3], out, progress=False)
    full = out.read_bytes()
    lines = full.split(b"\n")
    out.write_bytes(b"\n".join(lines[:2]) + b"\n" + lines[2][: len(lines[2]) // 2])  # cut mid-record
    users, good, torn = scan_done_users(out)
    assert torn and users == [seqs[0].user_id, seqs[1].user_id]
    s = inpaint_to_file(Inpainter(store.catalog), seqs, out, progress=False)
    assert s.repaired_torn_line and s.written == 2 and s.total == 4
    got = [json.loads(x)["user_id"] for x in out.read_text().splitlines()]
    assert got == [q.user_id for q in seqs]
    # valid JSON but no final newline also counts as torn (the newline write was lost)
    out.write_bytes(out.read_bytes().rstrip(b"\n"))
    assert scan_done_users(out)[2] is True


def test_corrupt_middle_line_is_an_error(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"user_id": "a"}\nnot json\n{"user_id": "b"}\n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2"):
        scan_done_users(p)


class _FakeLLM:
    name, model = "fake", "fake-1"

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def generate(self, messages, max_tokens=128, temperature=0.0, stop=None):
        self.calls.append(messages)
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply(messages) if callable(self.reply) else self.reply


def _pair_catalog():
    return Catalog([Item("a", "Bic Round Stic Blue Pens, 12 Count", "Bic", ["Office", "Pens"]),
                    Item("b", "Pilot G2 Black Gel Pens BL-G2-7, 4 Pack", "Pilot", ["Office", "Pens"])])


def test_llm_critique_is_used_and_prompt_has_both_items():
    cat = _pair_catalog()
    llm = _FakeLLM(lambda m: "something smoother than bic, black ink please" if "just bought" in m[1]["content"]
                   else "Hi, I write a lot and need supplies.")
    inp = Inpainter(cat, llm, narrator=Inpainter(cat).narrator)  # offline narratives: only critique/opening use the LLM
    rec = inp.record(UserSequence("u", [0, 1]))
    assert rec["turns"][1] == {"role": "user", "text": "something smoother than bic, black ink please", "kind": "critique"}
    assert rec["provenance"]["parts"]["critique"] == "llm" and rec["provenance"]["model"] == "fake-1"
    prompt = next(m for m in llm.calls if "just bought" in m[1]["content"])[1]["content"]
    assert "Bic Round Stic" in prompt and "Pilot G2" in prompt


def test_llm_critique_copying_target_or_failing_falls_back_offline():
    cat = _pair_catalog()
    for reply in ("I want the BL-G2-7 pens", "pilot g2 black gel pens please", LLMError("down")):
        inp = Inpainter(cat, _FakeLLM(reply), narrator=Inpainter(cat).narrator)
        rec = inp.record(UserSequence("u", [0, 1]))
        assert rec["provenance"]["parts"]["critique"] == "offline", reply
        assert "BL-G2-7".lower() not in rec["turns"][-1]["text"].lower()


def test_cli_inpaint_offline(tmp_path, monkeypatch):
    from lumenrec.cli import main

    out = tmp_path / "x.jsonl"
    rc = main(["data", "inpaint", "--data", "synthetic:num_items=200,num_users=30,num_conversations=2",
               "--out", str(out), "--limit", "3", "--no-progress"])
    assert rc == 0 and len(out.read_text().splitlines()) == 3


@pytest.mark.integration
@pytest.mark.slow
def test_real_smollm2_writes_critique_and_opening():
    """The local SmolLM2 writes the opening and critique (or they fall back, which the record says)."""
    from lumenrec.agent.llm.backends import TransformersLLM

    try:
        llm = TransformersLLM(num_threads=1)
    except Exception as e:
        pytest.skip(f"SmolLM2 not available: {e}")
    cat = _pair_catalog()
    inp = Inpainter(cat, llm, InpaintConfig(critique_positions="last"), narrator=Inpainter(cat).narrator)
    rec = inp.record(UserSequence("u", [0, 1]))
    parts = rec["provenance"]["parts"]
    assert rec["provenance"]["model"] == llm.model and parts["critique"] in ("llm", "offline")
    assert rec["turns"][0]["text"] and rec["turns"][1]["kind"] == "critique"
    assert "bl-g2-7" not in rec["turns"][1]["text"].lower()


def test_the_narrators_prompt_and_length_are_settings(tiny_catalog):
    """Training narratives for generative LUMEN use the agent's prompt (narrative-v3) and a shorter answer."""
    from lumenrec.data.inpaint import InpaintConfig, Inpainter
    from lumenrec.errors import ConfigError

    default = Inpainter(tiny_catalog).narrator
    assert default.max_tokens == 120 and default.prompt_version == "narrative-v1"
    tuned = Inpainter(tiny_catalog, config=InpaintConfig(narrative_prompt="narrative-v3", narrative_max_tokens=90)).narrator
    assert tuned.max_tokens == 90 and tuned.prompt_version == "narrative-v3"
    with pytest.raises(ConfigError, match="narrative_max_tokens"):
        InpaintConfig(narrative_max_tokens=0)
