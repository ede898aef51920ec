"""The real local model on llama.cpp: the registry's best installed model (the 1.5B when assembled).

In-process: deterministic greedy text, grammar-forced tool calls and JSON, the KV/state cache keeping
a shared prompt prefix across calls. Over HTTP (`lumenrec llm serve`): the official openai client and
LangChain's `create_agent` making real tool calls. Skips with the reason when llama-cpp-python or a
model is missing. Kept small: a few short prompts (about 1-3 minutes on 2 busy cores).
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration

PEN_TOOL = {"type": "function", "function": {
    "name": "lookup_price", "description": "Look up the price of one product in the shop's catalogue.",
    "parameters": {"type": "object", "properties": {"product": {"type": "string", "description": "The product name."}},
                   "required": ["product"]}}}
GREET_TOOL = {"type": "function", "function": {"name": "greet", "description": "Say hello.",
                                               "parameters": {"type": "object", "properties": {}}}}


def _model():
    from lumenrec.agent.llm.models import default_local_model
    from lumenrec.agent.llm.runtime import check_runtime

    st = check_runtime()
    if not st.ok:
        pytest.skip(f"llama.cpp runtime: {st['reason']}")
    best = default_local_model()
    if best is None:
        pytest.skip("no local model installed (lumenrec llm fetch qwen2.5-coder-1.5b-instruct)")
    return best


@pytest.fixture(scope="module")
def llm():
    from lumenrec.agent.llm.llamacpp import LlamaCppLLM

    spec, path = _model()
    return LlamaCppLLM(path, model_name=spec.name, num_threads=1, n_ctx=2048)


def test_greedy_generation_is_deterministic(llm):
    msgs = [{"role": "user", "content": "Name one thing found on an office desk. One word."}]
    llm.reset()
    a = llm.generate(msgs, max_tokens=8)
    llm.reset()
    assert a.strip() and llm.generate(msgs, max_tokens=8) == a
    llm.reset()
    pieces = list(llm.stream(msgs, max_tokens=8))
    assert "".join(pieces).strip() == a and len(pieces) >= 1


def test_forced_tool_call_is_valid_json_for_the_named_tool(llm):
    msgs = [{"role": "user", "content": "How much are the Pilot G2 gel pens?"}]
    res = llm.tool_call(msgs, [PEN_TOOL, GREET_TOOL], "required", max_tokens=60)
    assert res.forced and len(res.calls) == 1
    call = res.calls[0]
    assert call["name"] in ("lookup_price", "greet")
    if call["name"] == "lookup_price":
        assert isinstance(call["arguments"]["product"], str) and call["arguments"]["product"]
    named = llm.tool_call(msgs, [PEN_TOOL, GREET_TOOL], {"type": "function", "function": {"name": "greet"}},
                          max_tokens=30)
    assert named.calls == [{"name": "greet", "arguments": {}}]


def test_json_schema_output(llm):
    schema = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "blue", "green"]},
                                               "count": {"type": "integer"}}, "required": ["colour", "count"]}
    value, text, usage = llm.generate_json([{"role": "user", "content": "Three blue pens. Give colour and count."}],
                                           schema, max_tokens=40)
    assert set(value) == {"colour", "count"} and value["colour"] in ("red", "blue", "green")
    assert isinstance(value["count"], int) and json.loads(text) == value


def test_the_shared_prefix_stays_in_the_kv_cache(llm):
    system = {"role": "system", "content": "You are a terse assistant of an office-supplies shop. " * 8}
    first = llm.complete(llm.render([system, {"role": "user", "content": "Pens?"}]), max_tokens=1)[1]
    other = llm.complete(llm.render([{"role": "user", "content": "Something else entirely, about paper."}]), max_tokens=1)[1]
    again = llm.complete(llm.render([system, {"role": "user", "content": "Paper?"}]), max_tokens=1)[1]
    assert first["prompt_evaluated"] > 60 and other["prompt_evaluated"] > 5
    # back to the first prompt's prefix after another prompt: only the new tail is evaluated
    assert again["prompt_evaluated"] < first["prompt_evaluated"] / 3, (first, again)


def test_a_gguf_without_chat_template_is_refused(tmp_path):
    from lumenrec.agent.llm.llamacpp import LlamaCppLLM
    from lumenrec.errors import ConfigError

    with pytest.raises(ConfigError, match="gguf"):
        LlamaCppLLM(tmp_path / "missing.gguf", check_cpu=False)


# --------------------------------------------------------------------------------------- over HTTP
@pytest.fixture(scope="module")
def served():
    from netutil import llm_server

    spec, _ = _model()
    with llm_server(backend="llamacpp", model=spec.name, timeout_s=300) as base:
        yield base, spec.name


def test_official_openai_client_gets_tool_calls(served):
    from openai import OpenAI

    base, name = served
    client = OpenAI(base_url=base + "/v1", api_key="x", timeout=300, max_retries=0)
    r = client.chat.completions.create(model=name, max_tokens=60, tools=[PEN_TOOL], tool_choice="required",
                                       messages=[{"role": "developer", "content": "Use the tools."},
                                                 {"role": "user", "content": [{"type": "text",
                                                                               "text": "Price of Pilot G2 pens?"}]}])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "lookup_price" and json.loads(call.function.arguments)["product"]
    import openai

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", max_tokens=4, messages=[{"role": "user", "content": "hi"}])


def test_langchain_create_agent_makes_real_tool_calls(served):
    pytest.importorskip("langchain")
    from langchain.agents import create_agent
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    base, name = served
    seen = []

    @tool
    def lookup_price(product: str) -> str:
        """Look up the price of one product in the shop's catalogue."""
        seen.append(product)
        return f"{product}: $4.99"

    model = ChatOpenAI(base_url=base + "/v1", api_key="x", model=name, max_tokens=60, temperature=0, timeout=300,
                       max_retries=0)
    agent = create_agent(model, tools=[lookup_price],
                         system_prompt="You answer price questions. Always call lookup_price first, then answer in one sentence.")
    state = agent.invoke({"messages": [{"role": "user", "content": "How much do Pilot G2 gel pens cost?"}]},
                         config={"recursion_limit": 6})
    assert seen and "pilot" in seen[0].lower()  # the tool really ran, with the product the shopper named
    msgs = state["messages"]
    assert any(getattr(m, "tool_calls", None) for m in msgs)
    assert msgs[-1].type == "ai" and not msgs[-1].tool_calls and "4.99" in msgs[-1].content


def test_hybrid_agent_with_the_real_model(llm, tiny_catalog):
    """--llm local end to end on a tiny catalogue: a confident turn stays with the rules, an unsure one is one
    real forced call, and the top item's narrative is streamed and grounded."""
    from lumenrec.agent.hybrid import enable_local_llm
    from lumenrec.agent.recommender import Recommender
    from lumenrec.retriever.text_retriever import TextRetriever

    rec = enable_local_llm(Recommender(tiny_catalog, TextRetriever(tiny_catalog)), llm)
    events = list(rec.chat_stream("s", "I need gel pens"))
    reply = events[-1]
    route = next(s for s in reply.trace if s.name == "route")
    assert route.details["path"] == "rules" and reply.items
    assert len([e for e in events if isinstance(e, str)]) >= 3  # intro, the item line, its narrative pieces
    why = reply.items[0]["why"]
    assert why and rec.narrator.checker.check(why, rec.narrator.facts("endorsement", rec.catalog.get(reply.items[0]["id"]),
                                                                      [], "I need gel pens")).supported
    r2 = rec.chat("s", "my desk drawer is a mess this week")
    route2 = next(s for s in r2.trace if s.name == "route")
    assert route2.details["path"] in ("llm", "rules (llm failed)") and "why_llm" in route2.details
    if route2.details["path"] == "llm":
        assert route2.details["tool"] in ("recommend", "explain_item", "summarize_user", "smalltalk", "out_of_scope")


def test_narrative_v3_prefix_prepared_at_session_start_is_reused(llm):
    """The shopper prefix NarrativeGenerator.prepare evaluates is a token prefix of every v3 narrative
    prompt, so a narrative then evaluates only its own tail (request, item card, task line)."""
    from lumenrec.agent.narrative import NarrativeGenerator, build_messages, shopper_prefix
    from lumenrec.data import Item

    hist = [Item("h1", "Post-it Super Sticky Notes, 3 x 3, Yellow", "Post-it", ["Office", "Notes"]),
            Item("h2", "Scotch Magic Tape (810)", "Scotch", ["Office", "Tape"])]
    item = Item("g1", "Pilot G2 Retractable Gel Pens, Fine Point, Black, 12 Pack", "Pilot", ["Office", "Gel Pens"],
                description="Smooth gel ink and a comfortable grip for everyday writing. Refillable.")
    llm.reset()
    gen = NarrativeGenerator(llm, prompt_version="narrative-v3", max_tokens=8)
    prefix = llm.tokenize(shopper_prefix(llm.render, hist))
    gen.prepare(hist)
    for kind, crit in (("endorsement", "gel pens please, not BIC"), ("user_summary", None)):
        full = llm.tokenize(llm.render(build_messages(kind, item, hist, crit, version="narrative-v3")))
        assert full[:len(prefix)] == prefix, kind
        llm.generate_with_usage(build_messages(kind, item, [Item("z", "Other shopper's stapler", "Swingline", [])],
                                               crit, version="narrative-v3"), max_tokens=2)  # the KV moves away
        _, usage = llm.generate_with_usage(build_messages(kind, item, hist, crit, version="narrative-v3"), max_tokens=2)
        # the state cache brings the prepared prefix back: only the tail is evaluated
        assert usage["prompt_evaluated"] <= len(full) - len(prefix) + 1, (kind, usage, len(full), len(prefix))
