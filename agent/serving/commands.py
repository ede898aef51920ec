"""`lumenrec serve` (the HTTP API, see lumenrec.agent.serving.server) and `lumenrec demo` (the Gradio chat app)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the recommender over HTTP (REST + OpenAI-compatible + SSE)",
                       description="Serve the recommender over HTTP. Binds 127.0.0.1 by default; a bearer token "
                                   "is required to bind any other address.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", default="synthetic", help="registered dataset name or path (default synthetic: offline)")
    src.add_argument("--model-dir", default=None, help="a directory with recommender.json")
    src.add_argument("--factory", default=None,
                     help="advanced: 'package.module:function' returning a Recommender (tests, custom deployments)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token", default=os.environ.get("LUMENREC_TOKEN"),
                   help="bearer token clients must send (default $LUMENREC_TOKEN); required off loopback")
    p.add_argument("--db", default=None, help="SQLite file for sessions (default: in memory, lost on restart)")
    p.add_argument("--rate-limit", default="600/min", help="requests per client, e.g. 600/min, 10/s; 0 disables")
    p.add_argument("--max-body-bytes", type=int, default=65536, help="largest request body accepted")
    p.add_argument("--max-message-chars", type=int, default=4000, help="longest shopper message accepted")
    p.add_argument("--router", choices=["offline", "llm"], default="offline", help="turn router (llm falls back to offline)")
    p.add_argument("--llm-base-url", default="http://127.0.0.1:8001/v1", help="OpenAI-compatible endpoint for --router llm")
    p.add_argument("--llm-model", default="SmolLM2-135M-Instruct", help="model id for --router llm")
    p.add_argument("--llm-timeout", type=float, default=60.0, help="seconds an LLM turn may take before the fallback")
    from lumenrec.agent.hybrid import add_llm_arguments

    add_llm_arguments(p)
    p.add_argument("--chroma", default=None, metavar="HOST:PORT",
                   help="retrieve through the Chroma item index on this server (built with the text encoder)")
    p.add_argument("--index-prefix", default="lumenrec-items", help="collection prefix of the Chroma index")
    p.add_argument("--log-level", default="warning", help="uvicorn log level")
    p.set_defaults(func=_serve)

    d = sub.add_parser("demo", help="the Gradio chat demo (offline by default)")
    d.add_argument("--data", default="synthetic", help="dataset name or path (default synthetic)")
    d.add_argument("--recommender", default=None, help="a Recommender.from_pretrained directory instead of --data")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on")
    d.add_argument("--port", type=int, default=7860, help="port to listen on")
    d.add_argument("--llm-base-url", default="", help="an OpenAI-compatible endpoint pre-filled in the LLM switch")
    d.add_argument("--llm-model", default="SmolLM2-135M-Instruct", help="model id served there")
    d.add_argument("--llm", choices=["off", "local"], default="off",
                   help="local: switch the demo's LLM on with the local model (llama.cpp; #19)")
    d.set_defaults(func=_demo)


def build_recommender(args: argparse.Namespace):
    """The Recommender the flags describe, with its sessions in SQLite when --db is given."""
    from lumenrec.agent.recommender import Recommender, RecommenderConfig

    store = None
    if args.db:
        from lumenrec.agent.serving.store import SQLiteSessionStore

        store = SQLiteSessionStore(args.db)
    if args.factory:
        mod, _, fn = args.factory.partition(":")
        if not fn:
            from lumenrec.errors import ConfigError

            raise ConfigError("factory", args.factory, "must be 'package.module:function'")
        rec = getattr(importlib.import_module(mod), fn)()
        if store is not None:
            rec.store = store
        return rec
    cfg = RecommenderConfig(router=args.router, llm_base_url=args.llm_base_url, llm_model=args.llm_model,
                            llm_timeout_s=args.llm_timeout)
    kw = {"config": cfg, **({"store": store} if store is not None else {})}
    if args.chroma:
        from lumenrec.agent.serving.server import IndexRetriever
        from lumenrec.data.registry import load_dataset
        from lumenrec.retriever.index import IndexConfig, ItemIndex
        from lumenrec.retriever.text_encoder import TextEncoder

        host, _, port = args.chroma.rpartition(":")
        index = ItemIndex(IndexConfig(backend="http", host=host or "127.0.0.1", port=int(port),
                                      collection_prefix=args.index_prefix))
        catalog = load_dataset(args.data).catalog
        return Recommender(catalog, IndexRetriever(catalog, index, TextEncoder()), **kw)
    if args.model_dir:
        return Recommender.from_pretrained(args.model_dir, **kw)
    return Recommender.from_dataset(args.data, **kw)


def _serve(args: argparse.Namespace) -> int:
    from lumenrec.agent.serving.server import ServeConfig, serve

    # validate the config first: a missing token off loopback fails before any model loads
    config = ServeConfig(host=args.host, port=args.port, token=args.token or None, db_path=args.db,
                         rate_limit_per_min=args.rate_limit, max_body_bytes=args.max_body_bytes,
                         max_message_chars=args.max_message_chars, log_level=args.log_level)
    from lumenrec.agent.hybrid import apply_llm_arguments

    serve(config, apply_llm_arguments(build_recommender(args), args))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from lumenrec.agent.serving.demo_app import DemoConfig, launch

    launch(DemoConfig(data=args.data, recommender_dir=args.recommender, host=args.host, port=args.port,
                      llm_base_url="local" if args.llm == "local" else args.llm_base_url, llm_model=args.llm_model))
    return 0
