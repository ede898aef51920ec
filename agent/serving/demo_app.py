"""The Gradio chat demo: streaming replies, item cards, critique chips, a side panel, an LLM switch.

    lumenrec demo --data synthetic --host 127.0.0.1 --port 7860      # or: python demo.py

- The logic lives in :class:`DemoBackend` (plain Python, unit-tested without a browser);
  :func:`build_app` only wires it to Gradio 6 components (Chatbot in the messages format).
- Every browser tab gets its own session id in a ``gr.State`` (set on page load), so several
  shoppers at once never see each other's history or constraints.
- Offline by design: analytics off, system fonts only (no Google Fonts), no share link, no SSR.
- The LLM switch builds (once per endpoint) a Recommender with the LLM router and an LLM narrator
  over the same catalogue, retriever and session store; when the endpoint is unreachable the agent's
  offline fallback answers and the reply says so.
"""

from __future__ import annotations

import html
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

from lumenrec.errors import ConfigError, LumenrecError, MissingExtraError

__all__ = ["DemoConfig", "DemoBackend", "build_app", "launch", "render_cards", "render_side", "CHIPS"]

log = logging.getLogger(__name__)

# Quick critiques offered under the chat: label shown == message sent.
CHIPS = ("cheaper", "different brand", "more like #2")

SYSTEM_FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]

CSS = """
.lr-cards{display:flex;flex-wrap:wrap;gap:10px}
.lr-card{border:1px solid #d0d7de;border-radius:8px;padding:10px 12px;width:260px;background:#fff}
.lr-card .lr-rank{color:#57606a;font-size:12px}
.lr-card .lr-title{font-weight:600;margin:2px 0 4px 0}
.lr-card .lr-meta{color:#57606a;font-size:12px;margin-bottom:6px}
.lr-card .lr-why{font-size:13px}
.lr-side h4{margin:6px 0 2px 0}
.lr-empty{color:#57606a;font-style:italic}
"""


@dataclass
class DemoConfig:
    """What the demo serves and where."""

    # Registered dataset name or path: its catalogue is recommended from, its conversations give sample users.
    data: str = "synthetic"
    # A Recommender.from_pretrained directory (trained retriever) instead of a text retriever over `data`.
    recommender_dir: str | None = None
    # Loopback by default: the demo has no authentication.
    host: str = "127.0.0.1"
    port: int = 7860
    # Pre-filled in the LLM switch (empty: nothing configured; the shopper may type one).
    llm_base_url: str = ""
    llm_model: str = "SmolLM2-135M-Instruct"
    # Seconds one LLM turn may take before the offline router answers (keeps the demo responsive).
    llm_timeout_s: float = 20.0
    # Sample users offered in the dropdown (the first N conversations).
    max_sample_users: int = 50

    def __post_init__(self) -> None:
        if not 0 <= int(self.port) <= 65535:
            raise ConfigError("port", self.port, "must be in [0, 65535]")
        if self.llm_base_url and self.llm_base_url != "local" and not self.llm_base_url.startswith(("http://", "https://")):
            raise ConfigError("llm_base_url", self.llm_base_url, "must be an http(s) URL such as http://127.0.0.1:8001/v1")
        if self.max_sample_users < 0:
            raise ConfigError("max_sample_users", self.max_sample_users, "must be >= 0")
        if not self.llm_timeout_s > 0:
            raise ConfigError("llm_timeout_s", self.llm_timeout_s, "must be > 0")


# --------------------------------------------------------------------------------------- rendering
def render_cards(items: list[dict[str, str]]) -> str:
    """Item cards as HTML: rank, title, brand, category and the narrative ('why')."""
    if not items:
        return '<div class="lr-empty">No items yet: ask for something, e.g. "I need gel pens".</div>'
    cards = []
    for i, it in enumerate(items, 1):
        meta = " &middot; ".join(html.escape(x) for x in (it.get("brand", ""), it.get("category", "")) if x)
        why = f'<div class="lr-why">{html.escape(it["why"])}</div>' if it.get("why") else ""
        cards.append(f'<div class="lr-card" data-item-id="{html.escape(it["id"])}"><div class="lr-rank">#{i}</div>'
                     f'<div class="lr-title">{html.escape(it["title"])}</div><div class="lr-meta">{meta}</div>{why}</div>')
    return '<div class="lr-cards">' + "".join(cards) + "</div>"


def render_side(summary: str, constraints: str, history_titles: list[str], rejected: int = 0) -> str:
    """The side panel: the learned user summary, the active constraints, the history."""
    hist = "".join(f"<li>{html.escape(t)}</li>" for t in history_titles[-8:])
    return ('<div class="lr-side">'
            f'<h4>What I learned about you</h4><div class="lr-summary">{html.escape(summary) or "<i>nothing yet</i>"}</div>'
            f'<h4>Active constraints</h4><div class="lr-constraints">{html.escape(constraints) if constraints else "<i>none</i>"}'
            f'{f" (rejected items: {rejected})" if rejected else ""}</div>'
            f'<h4>History ({len(history_titles)} items)</h4><ul>{hist or "<li><i>empty: starting from scratch</i></li>"}</ul>'
            "</div>")


# ----------------------------------------------------------------------------------------- backend
@dataclass
class _Turn:
    """What one streamed update carries to the UI."""

    text: str
    items: list[dict[str, str]] = field(default_factory=list)
    done: bool = False
    note: str = ""


class DemoBackend:
    """The demo's behaviour without Gradio: sessions, sample users, streaming turns, side panel."""

    def __init__(self, recommender, conversations=(), *, llm_model: str = "SmolLM2-135M-Instruct",
                 llm_timeout_s: float = 20.0, max_sample_users: int = 50) -> None:
        self.rec = recommender
        self.catalog = recommender.catalog
        self.conversations = [c for c in conversations][:max_sample_users]
        self.llm_model, self.llm_timeout_s = llm_model, float(llm_timeout_s)
        self._llm_recs: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: DemoConfig) -> "DemoBackend":
        from lumenrec.agent.recommender import Recommender
        from lumenrec.data.registry import load_dataset

        rec = Recommender.from_pretrained(cfg.recommender_dir) if cfg.recommender_dir else Recommender.from_dataset(cfg.data)
        data = getattr(rec, "dataset_name", None) or cfg.data
        try:
            ds = load_dataset(data)
            convs = ds.conversations if list(rec.catalog.ids) == list(ds.catalog.ids) else []
        except LumenrecError as e:  # a built system whose dataset is not on this machine: no sample users
            log.info("no sample users: %s", e)
            convs = []
        return cls(rec, convs, llm_model=cfg.llm_model, llm_timeout_s=cfg.llm_timeout_s,
                   max_sample_users=cfg.max_sample_users)

    # -- sample users --
    def user_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs for the dropdown; value '' starts from scratch."""
        out = [("Start from scratch (no history)", "")]
        for i, c in enumerate(self.conversations):
            last = self.catalog.get(c.history[-1]).title if c.history and c.history[-1] in self.catalog else ""
            out.append((f"user {c.user_id}: {len(c.history)} items" + (f", last: {last[:48]}" if last else ""), str(i)))
        return out

    def new_session(self, user_choice: str = "") -> str:
        """A fresh session id, seeded with a sample user's history when one is chosen."""
        from lumenrec.agent.session import Session

        sid = uuid.uuid4().hex
        s = Session(session_id=sid)
        if user_choice not in ("", None):
            try:
                conv = self.conversations[int(user_choice)]
            except (ValueError, IndexError):
                raise ConfigError("user", user_choice, f"not one of the {len(self.conversations)} sample users") from None
            s.user_id = conv.user_id
            s.history = [h for h in conv.history if h in self.catalog]
        self.rec.store.put(s)
        return sid

    def opening_hint(self, user_choice: str = "") -> str:
        """A suggested first message: the sample user's recorded opening, else a generic one."""
        if user_choice not in ("", None):
            try:
                return self.conversations[int(user_choice)].opening or ""
            except (ValueError, IndexError):
                return ""
        return "I need gel pens"

    # -- agents --
    def agent(self, use_llm: bool, base_url: str = ""):
        """The offline recommender, or (switch on and a URL given) one with the LLM router and narrator."""
        base_url = (base_url or "").strip()
        if not use_llm or not base_url:
            return self.rec
        if base_url == "local":  # the local model in this process: the hybrid router + LLM narratives (#19)
            with self._lock:
                if "local" not in self._llm_recs:
                    from lumenrec.agent.hybrid import enable_local_llm
                    from lumenrec.agent.recommender import Recommender

                    rec = Recommender(self.catalog, self.rec.retriever, store=self.rec.store, parser=self.rec.parser)
                    self._llm_recs["local"] = enable_local_llm(rec)
                return self._llm_recs["local"]
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError("llm_base_url", base_url, "must be an http(s) URL such as http://127.0.0.1:8001/v1")
        with self._lock:
            if base_url not in self._llm_recs:
                from lumenrec.agent.llm.backends import OpenAILLM
                from lumenrec.agent.narrative import NarrativeGenerator
                from lumenrec.agent.recommender import Recommender, RecommenderConfig

                cfg = RecommenderConfig(router="llm", llm_base_url=base_url, llm_model=self.llm_model,
                                        llm_timeout_s=self.llm_timeout_s)
                narrator = NarrativeGenerator(OpenAILLM(base_url, self.llm_model, timeout_s=self.llm_timeout_s,
                                                        max_retries=0), self.catalog)
                self._llm_recs[base_url] = Recommender(self.catalog, self.rec.retriever, store=self.rec.store,
                                                       narrator=narrator, parser=self.rec.parser, config=cfg)
            return self._llm_recs[base_url]

    # -- a turn --
    def stream(self, session_id: str, message: str, use_llm: bool = False, base_url: str = "") -> Iterator[_Turn]:
        """Yield the reply text as it grows, then a final update with the items (and a fallback note)."""
        agent = self.agent(use_llm, base_url)
        text = ""
        reply = None
        for ev in agent.chat_stream(session_id, message):
            if isinstance(ev, str):
                text += ev
                yield _Turn(text)
            else:
                reply = ev
        assert reply is not None
        note = ""
        if use_llm and base_url.strip():
            llm_failed = reply.fallback_used or any(
                "fallback" in str(s.details.get("reason", "")) or s.name == "route_llm_failed"
                or s.details.get("path") == "rules (llm failed)" for s in reply.trace)
            if llm_failed:
                note = (f"(The LLM at {base_url.strip()} did not answer, so I fell back to the offline agent "
                        "for this reply.)")
        yield _Turn(reply.text, reply.items, True, note)

    def side_panel(self, session_id: str) -> str:
        from lumenrec.agent.recommender import describe_constraints

        s = self.rec.store.get(session_id)
        if s is None:
            return render_side("", "", [])
        hist = [self.catalog.get(h) for h in s.history if h in self.catalog]
        summary = ""
        if hist:
            summary = self.rec.narrator.narrate("user_summary", None, hist, user_id=s.user_id or s.session_id) \
                if hasattr(self.rec.narrator, "narrate") else \
                self.rec.narrator.generate("user_summary", None, hist, user_id=s.user_id or s.session_id).text
        return render_side(summary, describe_constraints(s.constraints), [h.title for h in hist], len(s.rejected))


# ------------------------------------------------------------------------------------------- gradio
def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError as e:
        raise MissingExtraError("gradio", "demo", "the chat demo") from e
    return gr


def theme():
    """Gradio's default look with system fonts only (no font download at page load)."""
    gr = _import_gradio()
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def build_app(backend: DemoBackend, cfg: DemoConfig | None = None):
    """The gr.Blocks app over `backend`."""
    gr = _import_gradio()
    cfg = cfg or DemoConfig()
    with gr.Blocks(title="lumenrec demo", analytics_enabled=False) as app:
        sid = gr.State(None)  # per-browser session id, set on page load
        gr.Markdown("## lumenrec: conversational recommendations\nAsk for office products, then steer with critiques.")
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Chat", height=380, elem_id="lr-chat", buttons=[], feedback_options=None)
                with gr.Row():
                    box = gr.Textbox(placeholder="e.g. I need gel pens, not BIC", show_label=False, scale=5,
                                     elem_id="lr-input")
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="lr-send")
                with gr.Row():
                    chips = [gr.Button(c, size="sm", elem_id=f"lr-chip-{i}") for i, c in enumerate(CHIPS)]
                cards = gr.HTML(render_cards([]), elem_id="lr-cards")
            with gr.Column(scale=2):
                user = gr.Dropdown(backend.user_choices(), value="", label="Start as", elem_id="lr-user")
                restart = gr.Button("Start new chat", size="sm", elem_id="lr-restart")
                side = gr.HTML(render_side("", "", []), elem_id="lr-side")
                with gr.Accordion("Language model (optional)", open=False):
                    use_llm = gr.Checkbox(cfg.llm_base_url == "local", elem_id="lr-use-llm",
                                          label="Use an LLM: an OpenAI-compatible base_url, or 'local' for the local model")
                    base_url = gr.Textbox(cfg.llm_base_url, label="base_url", placeholder="http://127.0.0.1:8001/v1",
                                          elem_id="lr-base-url")

        def start(choice):
            s = backend.new_session(choice or "")
            return s, [], render_cards([]), backend.side_panel(s), backend.opening_hint(choice or "")

        def respond(message, history, s, llm_on, url):
            history = list(history or [])
            message = (message or "").strip()
            if not message:
                yield history, gr.skip(), gr.skip(), gr.skip(), s
                return
            if s is None:
                s = backend.new_session("")
            history = history + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
            yield history, "", gr.skip(), gr.skip(), s
            try:
                for upd in backend.stream(s, message, bool(llm_on), url or ""):
                    history[-1] = {"role": "assistant", "content": upd.text + (f"\n\n_{upd.note}_" if upd.note else "")}
                    if upd.done:
                        yield history, "", render_cards(upd.items) if upd.items else gr.skip(), backend.side_panel(s), s
                    else:
                        yield history, "", gr.skip(), gr.skip(), s
            except Exception as e:  # show the error in the chat instead of a stuck spinner
                log.exception("demo turn failed")
                history[-1] = {"role": "assistant", "content": f"Sorry, that failed: {e}"}
                yield history, "", gr.skip(), gr.skip(), s

        outs = [chat, box, cards, side, sid]
        ins = [box, chat, sid, use_llm, base_url]
        app.load(start, [user], [sid, chat, cards, side, box])
        user.change(start, [user], [sid, chat, cards, side, box])
        restart.click(start, [user], [sid, chat, cards, side, box])
        box.submit(respond, ins, outs)
        send.click(respond, ins, outs)
        def chip(text):
            def send_chip(h, s, lo, u):
                yield from respond(text, h, s, lo, u)
            return send_chip

        for b, text in zip(chips, CHIPS):
            b.click(chip(text), [chat, sid, use_llm, base_url], outs)
    return app


def launch(cfg: DemoConfig, *, block: bool = True):
    """Build the backend and serve the app (no share link, analytics off, system fonts)."""
    gr = _import_gradio()
    backend = DemoBackend.from_config(cfg)
    app = build_app(backend, cfg)
    app.queue(default_concurrency_limit=4)
    app.launch(server_name=cfg.host, server_port=cfg.port, share=False, theme=theme(), css=CSS, ssr_mode=False,
               footer_links=[], prevent_thread_lock=not block, quiet=False, show_error=True)
    return app
