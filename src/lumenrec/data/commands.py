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


def _info(args: argparse.Namespace) -> int:
    from lumenrec.data.registry import load_dataset

    ds = load_dataset(args.name, skip_bad=args.skip_bad)
    print(json.dumps({**ds.summary(), **{k: v for k, v in ds.info.items() if k != "skipped_detail"}}, indent=2, default=str))
    return 0
