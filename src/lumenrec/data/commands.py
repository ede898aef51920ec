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
