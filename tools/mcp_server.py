"""MCP surface: the lumenrec tools over the Model Context Protocol (stdio or streamable HTTP).

    lumenrec mcp                                   # stdio (for Claude Desktop, IDEs, agents)
    lumenrec mcp --transport http --port 8765      # streamable HTTP at http://127.0.0.1:8765/mcp

Built on the official MCP Python SDK 2.x (``mcp.server.mcpserver.MCPServer``, formerly FastMCP).
Requires the ``mcp`` extra (imported lazily: ``MissingExtraError`` otherwise).
"""

from __future__ import annotations

import contextlib
import logging
import sys

from lumenrec.errors import ConfigError, MissingExtraError
from lumenrec.tools.core import TOOL_NAMES, LumenTools

__all__ = ["build_mcp_server", "serve_mcp", "load_recommender"]

log = logging.getLogger(__name__)

INSTRUCTIONS = ("Office-products recommender. Call recommend with what the shopper wants, then "
                "refine_with_critique with their feedback; use the same session_id for one conversation. "
                "Items come back as 'id | title | brand' lines: only those items exist.")


def _mcp_server_class():
    try:
        from mcp.server.mcpserver import MCPServer
    except ImportError as e:
        raise MissingExtraError(e.name or "mcp", "mcp", "the MCP server (mcp>=2)") from e
    return MCPServer


def build_mcp_server(tools: LumenTools, name: str = "lumenrec"):
    """An MCPServer exposing the five tools (names, docstrings and signatures from tools.core)."""
    MCPServer = _mcp_server_class()
    server = MCPServer(name, instructions=INSTRUCTIONS)
    for tool_name in TOOL_NAMES:
        fn = getattr(tools, tool_name)
        server.add_tool(fn, name=tool_name, description=" ".join((fn.__doc__ or "").split()))
    return server


def load_recommender(dataset: str = "synthetic", model_dir: str | None = None):
    """The recommender the servers and the chat command use: a pretrained directory or a dataset."""
    from lumenrec.agent.recommender import Recommender

    if model_dir:
        return Recommender.from_pretrained(model_dir)
    return Recommender.from_dataset(dataset)


def serve_mcp(transport: str = "stdio", *, host: str = "127.0.0.1", port: int = 8765, dataset: str = "synthetic",
              model_dir: str | None = None) -> None:
    """Load the recommender and serve the tools until interrupted."""
    if transport not in ("stdio", "http"):
        raise ConfigError("transport", transport, "must be 'stdio' or 'http'")
    _mcp_server_class()  # fail fast, before loading data, when the extra is missing
    # stdout is the protocol channel in stdio mode: anything a library prints while loading goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        rec = load_recommender(dataset, model_dir)
        rec.warmup()
        server = build_mcp_server(LumenTools(rec))
    if transport == "stdio":
        log.info("MCP server ready on stdio")
        server.run("stdio")
    else:
        log.warning("MCP server at http://%s:%d/mcp", host, port)
        server.run("streamable-http", host=host, port=int(port))
