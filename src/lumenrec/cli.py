"""The `lumenrec` command line. It only parses arguments and fills configs; work lives in the library.

Each area registers its own subcommands through a `register(subparsers)` function (listed in
`_COMMAND_MODULES`), imported lazily so that `lumenrec --help` stays fast and a missing optional
extra only affects its own command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lumenrec.errors import LumenrecError

__all__ = ["main", "build_parser"]

_COMMAND_MODULES = [
    "lumenrec.quickstart",
    "lumenrec.build",
    "lumenrec.data.commands",
    "lumenrec.retriever.commands",
    "lumenrec.retriever.index_commands",
    "lumenrec.retriever.ilm_commands",
    "lumenrec.eval.commands",
    "lumenrec.eval.replay_commands",
    "lumenrec.eval.simulate_commands",
    "lumenrec.agent.commands",
    "lumenrec.agent.llm.commands",
    "lumenrec.agent.serving.commands",
    "lumenrec.tools.commands",
]


def build_parser() -> argparse.ArgumentParser:
    from lumenrec import __version__

    p = argparse.ArgumentParser(prog="lumenrec", description="Conversational recommender plugin: data, training, index, eval, chat.")
    p.add_argument("--version", action="version", version=f"lumenrec {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _COMMAND_MODULES:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:  # that area has no commands yet
                continue
            raise
        m.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except LumenrecError as e:
        print(f"lumenrec: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lumenrec: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
