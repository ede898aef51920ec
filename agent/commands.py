"""`lumenrec chat`: talk to the recommender in a terminal (REPL) or send one message (--message)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="chat with the recommender (interactive, or one --message)")
    p.add_argument("--message", "-m", default=None, help="send one message, print the reply and exit")
    p.add_argument("--data", "--dataset", dest="dataset", default="synthetic",
                   help="registered dataset (default synthetic: offline); its built system when `lumenrec build` made one")
    p.add_argument("--model", "--model-dir", dest="model_dir", default=None,
                   help="a system directory from `lumenrec build` (overrides --data)")
    p.add_argument("--router", choices=["offline", "llm"], default="offline",
                   help="offline rules (default) or the LLM tool-calling agent (falls back to offline)")
    p.add_argument("--llm-base-url", default="http://127.0.0.1:8001/v1", help="OpenAI-compatible endpoint for --router llm")
    p.add_argument("--llm-model", default="SmolLM2-135M-Instruct", help="model id for --router llm")
    from lumenrec.agent.hybrid import add_llm_arguments

    add_llm_arguments(p)
    p.add_argument("--session", default="cli", help="session id (default: cli)")
    p.add_argument("--history", default="", help="comma-separated item ids the shopper bought before")
    p.add_argument("--load-session", default=None, help="continue a conversation saved with --save-session")
    p.add_argument("--save-session", default=None, help="write the session JSON here when done")
    p.add_argument("--json", action="store_true", help="print the whole reply (items, trace) as JSON")
    p.add_argument("--trace", action="store_true", help="print each turn's trace steps")
    p.set_defaults(func=_chat)


def _print_reply(reply, args) -> None:
    if args.json:
        print(json.dumps(reply.to_dict(), indent=2, default=str))
        return
    print(reply.text)
    if args.trace:
        for s in reply.trace:
            print(f"  [{s.name} {s.ms:.1f} ms] {json.dumps(s.details, default=str)[:300]}")
        if reply.fallback_used:
            print("  [fallback: the offline router answered]")


def _chat(args: argparse.Namespace) -> int:
    from lumenrec.agent.recommender import Recommender, RecommenderConfig

    cfg = RecommenderConfig(router=args.router, llm_base_url=args.llm_base_url, llm_model=args.llm_model)
    if args.model_dir:
        rec = Recommender.from_pretrained(args.model_dir, config=cfg)
    else:
        rec = Recommender.from_dataset(args.dataset, config=cfg)
    from lumenrec.agent.hybrid import apply_llm_arguments

    apply_llm_arguments(rec, args)
    sid = args.session
    if args.load_session:
        with open(args.load_session, encoding="utf-8") as f:
            sid = rec.restore_session(f.read()).session_id
    history = [h.strip() for h in args.history.split(",") if h.strip()]
    try:
        if args.message is not None:
            _print_reply(rec.chat(sid, args.message, history or None), args)
        else:
            rec.warmup()
            # before the shopper types: with --llm local, the narrative prefix of their history is evaluated now
            rec.prepare_narrator(rec.session(sid, history or None).history, background=True)
            print("lumenrec chat: type a message (empty line or Ctrl-D to quit).", file=sys.stderr)
            while True:
                try:
                    line = input("you> ")
                except EOFError:
                    break
                if not line.strip():
                    break
                last = "\n"
                for ev in rec.chat_stream(sid, line, history or None):
                    if isinstance(ev, str):
                        if not args.json:
                            sys.stdout.write(ev)
                            sys.stdout.flush()
                            last = ev or last
                    else:
                        if not args.json and not last.endswith("\n"):
                            print()
                        if args.json:
                            _print_reply(ev, args)
                        elif args.trace:
                            for s in ev.trace:
                                print(f"  [{s.name} {s.ms:.1f} ms]")
                            if ev.fallback_used:
                                print("  [fallback: the offline router answered]")
                        print()
    finally:
        if args.save_session and rec.store.get(sid) is not None:
            with open(args.save_session, "w", encoding="utf-8") as f:
                f.write(rec.save_session(sid))
    return 0
