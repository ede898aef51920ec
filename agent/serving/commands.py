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
    src.add_argument("--data", default="synthetic",
                     help="registered dataset name or path (default synthetic: offline); its built system when one exists")
    src.add_argument("--model", "--model-dir", dest="model_dir", default=None,
                     help="a system directory from `lumenrec build`")
    src.add_argument("--factory", default=None,
                     help="advanced: 'package.module:function' returning a Recommender (tests, custom deployments)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token", default=os.environ.get("LUMENREC_TOKEN"),
                   help="bearer token clients must send (default $LUMENREC_TOKEN); required off loopback")
    p.add_argument("--db", default=None,
                   help="where sessions live: a SQLite file, or postgresql://user@host:port/db to share them between "
                        "replicas (default: in memory, lost on restart)")
    p.add_argument("--api-keys", default=None, metavar="FILE",
                   help="API keys, one 'principal key' per line (or a JSON object): each key is its own principal "
                        "(its sessions, its rate limit)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="another Host header name to accept on the tokenless loopback default (repeatable)")
    p.add_argument("--max-concurrent-turns", type=int, default=4, help="turns running at once (default 4)")
    p.add_argument("--max-queue", type=int, default=64, help="turns waiting for a slot before 503s (default 64)")
    p.add_argument("--queue-timeout", type=float, default=15.0, help="seconds a turn may wait for a slot (default 15)")
    p.add_argument("--request-timeout", type=float, default=60.0,
                   help="deadline of a turn in seconds: past it 504 and the turn is not applied (default 60)")
    p.add_argument("--session-ttl", type=float, default=7 * 24 * 3600.0,
                   help="seconds an untouched session lives (default 7 days; 0: forever)")
    p.add_argument("--max-turns", type=int, default=200, help="turns per session (default 200)")
    p.add_argument("--rate-limit", default="600/min", help="requests per client, e.g. 600/min, 10/s; 0 disables")
    p.add_argument("--max-body-bytes", type=int, default=65536, help="largest request body accepted")
    p.add_argument("--max-message-chars", type=int, default=4000, help="longest shopper message accepted")
    p.add_argument("--router", choices=["offline", "llm"], default="offline", help="turn router (llm falls back to offline)")
    p.add_argument("--llm-base-url", default="http://127.0.0.1:8001/v1", help="OpenAI-compatible endpoint for --router llm")
    p.add_argument("--llm-model", default="SmolLM2-135M-Instruct", help="model id for --router llm")
    p.add_argument("--llm-timeout", type=float, default=60.0, help="seconds an LLM turn may take before the fallback")
    p.add_argument("--chroma", default=None, metavar="HOST:PORT",
                   help="the Chroma server holding the index: with --model, the built system's index (written there by "
                        "`lumenrec build --chroma`); alone, a text-encoder index over --data")
    p.add_argument("--index-prefix", default="lumenrec-items", help="collection prefix of the Chroma index")
    p.add_argument("--log-level", default="warning", help="uvicorn log level")
    p.set_defaults(func=_serve)

    d = sub.add_parser("demo", help="the Gradio chat demo (offline by default)")
    d.add_argument("--data", default="synthetic", help="dataset name or path (default synthetic)")
    d.add_argument("--model", "--recommender", dest="recommender", default=None,
                   help="a system directory from `lumenrec build` instead of --data")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on")
    d.add_argument("--port", type=int, default=7860, help="port to listen on")
    d.add_argument("--llm-base-url", default="", help="an OpenAI-compatible endpoint pre-filled in the LLM switch")
    d.add_argument("--llm-model", default="SmolLM2-135M-Instruct", help="model id served there")
    d.set_defaults(func=_demo)


def build_recommender(args: argparse.Namespace):
    """The Recommender the flags describe, with its sessions in SQLite when --db is given."""
    from lumenrec.agent.recommender import Recommender, RecommenderConfig

    store = None
    if args.db:
        from lumenrec.agent.serving.store import open_store

        store = open_store(args.db, ttl_s=getattr(args, "session_ttl", 0.0))
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
    if args.chroma and args.model_dir:  # the built system, its index on a `chroma run` server
        host, _, port = args.chroma.rpartition(":")
        return Recommender.from_pretrained(args.model_dir, index={"backend": "http", "host": host or "127.0.0.1",
                                                                  "port": int(port)}, **kw)
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
    from lumenrec.agent.serving.server import load_api_keys

    config = ServeConfig(host=args.host, port=args.port, token=args.token or None, db_path=args.db,
                         api_keys=load_api_keys(args.api_keys) if args.api_keys else {},
                         rate_limit_per_min=args.rate_limit, max_body_bytes=args.max_body_bytes,
                         max_message_chars=args.max_message_chars, log_level=args.log_level,
                         allowed_hosts=tuple(args.allowed_host), max_concurrent_turns=args.max_concurrent_turns,
                         max_queue=args.max_queue, queue_timeout_s=args.queue_timeout,
                         request_timeout_s=args.request_timeout, session_ttl_s=args.session_ttl,
                         max_turns=args.max_turns)
    serve(config, build_recommender(args))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from lumenrec.agent.serving.demo_app import DemoConfig, launch

    launch(DemoConfig(data=args.data, recommender_dir=args.recommender, host=args.host, port=args.port,
                      llm_base_url=args.llm_base_url, llm_model=args.llm_model))
    return 0
