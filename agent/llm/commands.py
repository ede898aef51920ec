"""`lumenrec llm ...`: serve a local model over the OpenAI API, or ask a model one question."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("llm", help="the language model: serve it (OpenAI-compatible) or query it")
    llm_sub = p.add_subparsers(dest="llm_command", metavar="LLM_COMMAND")

    s = llm_sub.add_parser("serve", help="serve a local model at /v1/chat/completions (OpenAI-compatible)")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: the server has no auth)")
    s.add_argument("--port", type=int, default=8001)
    s.add_argument("--model", default=None, help="HF model directory or .gguf file (default: SmolLM2-135M-Instruct)")
    s.add_argument("--model-name", default=None, help="the model id clients see (default: from the file name)")
    s.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    s.add_argument("--log-level", default="warning")
    s.set_defaults(func=_serve)

    g = llm_sub.add_parser("generate", help="send one prompt to a model and print the answer")
    g.add_argument("prompt")
    g.add_argument("--backend", default="transformers", choices=["transformers", "openai"])
    g.add_argument("--model", default=None, help="local: model directory or .gguf; openai: model id")
    g.add_argument("--base-url", default="http://127.0.0.1:8001/v1")
    g.add_argument("--max-tokens", type=int, default=128)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--timeout", type=float, default=60.0)
    g.add_argument("--stream", action="store_true", help="print pieces as they arrive")
    g.set_defaults(func=_generate)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _serve(args: argparse.Namespace) -> int:
    from lumenrec.agent.llm.server import ServerConfig, serve

    serve(ServerConfig(host=args.host, port=args.port, model_path=args.model, model_name=args.model_name,
                       num_threads=args.threads, log_level=args.log_level))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from lumenrec.agent.llm.backends import LLMConfig, make_llm

    if args.backend == "transformers":
        cfg = LLMConfig(backend="transformers", model_path=args.model)
    else:
        cfg = LLMConfig(backend="openai", base_url=args.base_url, timeout_s=args.timeout,
                        **({"model": args.model} if args.model else {}))
    llm = make_llm(cfg)
    messages = [{"role": "user", "content": args.prompt}]
    t0 = time.perf_counter()
    if args.stream:
        for piece in llm.stream(messages, args.max_tokens, args.temperature):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        print(llm.generate(messages, args.max_tokens, args.temperature))
    print(f"[{llm.name}:{llm.model} {time.perf_counter() - t0:.2f} s]", file=sys.stderr)
    return 0
