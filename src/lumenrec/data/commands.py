"""`lumenrec data ...` subcommands."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="load, inspect, generate and download datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")

    info = dsub.add_parser("info", help="load a dataset and print its size (checks the format)")
    info.add_argument("name", help="synthetic | office-2014 | beauty-2014 | grocery-2014 | office-2018 | PATH")
    info.add_argument("--skip-bad", action="store_true", help="skip malformed records and report them instead of failing")
    info.set_defaults(func=_info)

    _register_download(dsub)
    _register_synth(dsub)
    _register_inpaint(dsub)


def _info(args: argparse.Namespace) -> int:
    from lumenrec.data.registry import load_dataset

    ds = load_dataset(args.name, skip_bad=args.skip_bad)
    print(json.dumps({**ds.summary(), **{k: v for k, v in ds.info.items() if k != "skipped_detail"}}, indent=2, default=str))
    return 0


def _register_download(dsub: argparse._SubParsersAction) -> None:
    dl = dsub.add_parser("download", help="fetch public dataset files into the cache (resumable)",
                         description="Fetch public dataset files into <cache>/data/<dataset dir>. "
                                     "Names: office-2014, beauty-2014, grocery-2014, office-2018, "
                                     "amazon-2014:<Category>, amazon-2018:<Category>, regen "
                                     "(regen needs --file or --url: it is on Kaggle behind a token).")
    dl.add_argument("name", help="dataset to fetch (see above)")
    dl.add_argument("--dest", default=None, help="target directory (default: <cache>/data/<dataset dir>)")
    dl.add_argument("--base-url", default=None,
                    help="replace the default base URL (a mirror); also $LUMENREC_DOWNLOAD_BASE")
    dl.add_argument("--url", default=None, help="fetch this one URL instead of the default files")
    dl.add_argument("--file", default=None, help="import a local file instead (a .zip is extracted)")
    dl.add_argument("--force", action="store_true", help="download again even if the file is there")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    dl.add_argument("--timeout", type=float, default=60.0, help="seconds per network operation")
    dl.set_defaults(func=_download)


def _download(args: argparse.Namespace) -> int:
    from lumenrec.data.download import download

    paths = download(args.name, args.dest, base_url=args.base_url, url=args.url, file=args.file,
                     force=args.force, progress=not args.no_progress, timeout=args.timeout)
    for p in paths:
        print(p)
    if paths:
        print(f"load it with: lumenrec data info {paths[0].parent}")
    return 0


def _register_synth(dsub: argparse._SubParsersAction) -> None:
    sy = dsub.add_parser("synth", help="generate the synthetic office-supplies store into a directory")
    sy.add_argument("--out", required=True, help="directory to write Synthetic.item.json, Synthetic.inter.json, "
                                                  "Synthetic.time.json and conversations.jsonl into")
    sy.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    sy.add_argument("--num-items", type=int, default=None, help="catalogue size (default 3000)")
    sy.add_argument("--num-users", type=int, default=None, help="number of users (default 4000)")
    sy.add_argument("--num-conversations", type=int, default=None, help="REGEN-style conversations (default 300)")
    sy.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    from lumenrec.data.synthetic import SyntheticConfig, generate, save_store

    kw = {k: v for k, v in (("seed", args.seed), ("num_items", args.num_items), ("num_users", args.num_users),
                            ("num_conversations", args.num_conversations)) if v is not None}
    ds = generate(SyntheticConfig(**kw))
    out = save_store(ds, args.out)
    print(json.dumps({**ds.summary(), "out": str(out)}, indent=2))
    return 0


def _register_inpaint(dsub: argparse._SubParsersAction) -> None:
    ip = dsub.add_parser("inpaint", help="write REGEN-style conversations (critiques + narratives) for a dataset's users",
                         description="One JSON line per user (dev conversations.jsonl format plus `critiques` and "
                                     "`provenance`). Resumable: re-running skips users already in --out.")
    ip.add_argument("--data", required=True, help="dataset name or path (e.g. synthetic, office-2014)")
    ip.add_argument("--out", required=True, help="the JSONL file to write (appended to; resumable)")
    ip.add_argument("--backend", default="offline", choices=["offline", "transformers", "openai"],
                    help="who writes the texts: templates (offline), the local SmolLM2, or an OpenAI-compatible endpoint")
    ip.add_argument("--base-url", default="http://127.0.0.1:8001/v1", help="OpenAI-compatible endpoint (--backend openai)")
    ip.add_argument("--model", default=None, help="model id (openai) or a model dir/.gguf file (transformers)")
    ip.add_argument("--limit", type=int, default=None, help="at most this many users in the file")
    ip.add_argument("--seed", type=int, default=0)
    ip.add_argument("--critiques", default="all", choices=["all", "last"],
                    help="critique every similar consecutive pair (all, REGEN) or only previous -> target (last)")
    ip.add_argument("--similar-prefix", type=int, default=1, help="category levels two items must share to get a critique")
    ip.add_argument("--include-dev-users", action="store_true",
                    help="also inpaint users that the dataset's own conversations (the dev set) cover")
    ip.add_argument("--no-progress", action="store_true")
    ip.set_defaults(func=_inpaint)


def _inpaint(args: argparse.Namespace) -> int:
    from lumenrec.data.inpaint import InpaintConfig, Inpainter, inpaint_to_file
    from lumenrec.data.registry import load_dataset

    cfg = InpaintConfig(seed=args.seed, similar_prefix=args.similar_prefix, critique_positions=args.critiques,
                        exclude_conversation_users=not args.include_dev_users)
    llm = None
    if args.backend != "offline":
        from lumenrec.agent.llm.backends import DEFAULT_LOCAL_MODEL_NAME, LLMConfig, make_llm

        if args.backend == "transformers":
            llm = make_llm(LLMConfig(backend="transformers", model_path=args.model))
        else:
            llm = make_llm(LLMConfig(backend="openai", base_url=args.base_url,
                                     model=args.model or DEFAULT_LOCAL_MODEL_NAME))
    ds = load_dataset(args.data)
    inp = Inpainter(ds.catalog, llm, cfg)
    summary = inpaint_to_file(inp, inp.eligible(ds), args.out, limit=args.limit, progress=not args.no_progress)
    print(json.dumps(summary.as_dict(), indent=2))
    return 0
