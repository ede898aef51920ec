"""`lumenrec mcp`: serve the recommender's tools over the Model Context Protocol."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mcp", help="serve the recommender tools over MCP (stdio or streamable HTTP)")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio",
                   help="stdio (default; for desktop apps and agents) or http (streamable HTTP at /mcp)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1: no auth)")
    p.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    p.add_argument("--data", "--dataset", dest="dataset", default="synthetic",
                   help="registered dataset to recommend from (default synthetic); its built system when one exists")
    p.add_argument("--model", "--model-dir", dest="model_dir", default=None,
                   help="a system directory from `lumenrec build` (overrides --data)")
    p.set_defaults(func=_mcp)


def _mcp(args: argparse.Namespace) -> int:
    from lumenrec.tools.mcp_server import serve_mcp

    serve_mcp(args.transport, host=args.host, port=args.port, dataset=args.dataset, model_dir=args.model_dir)
    return 0
