"""MCP surface: the lumenrec tools over the Model Context Protocol (stdio or streamable HTTP).

    lumenrec mcp                                   # stdio (for Claude Desktop, IDEs, agents)
    lumenrec mcp --transport http --port 8765      # streamable HTTP at http://127.0.0.1:8765/mcp

Built on the official MCP Python SDK 2.x (``mcp.server.mcpserver.MCPServer``, formerly FastMCP).
Requires the ``mcp`` extra (imported lazily: ``MissingExtraError`` otherwise).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys

from lumenrec.errors import ConfigError, MissingExtraError
from lumenrec.tools.core import TOOL_NAMES, TOOL_SCHEMAS, LumenTools, tool_args_model, tool_description

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
    """An MCPServer exposing the five tools.

    Input schemas are tools.core.TOOL_SCHEMAS (argument descriptions, ``additionalProperties: false``)
    and calls are validated against the same pydantic models LangChain and LlamaIndex use, so an
    unknown or mistyped argument is refused. A tool that cannot act (empty request, unknown item,
    nothing shown yet) answers with ``isError: true`` and a sentence saying what to send instead.
    """
    MCPServer = _mcp_server_class()
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.mcpserver.tools import Tool
    from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
    from pydantic import ConfigDict

    built = []
    for tool_name in TOOL_NAMES:
        def run(_name=tool_name, **kwargs) -> str:
            res = tools.call(_name, kwargs)
            if not res.ok:
                raise ToolError(res.text)  # -> CallToolResult(is_error=True, content=[the sentence])
            return res.text

        model = tool_args_model(tool_name)
        # the SDK validates with an ArgModelBase; ours adds the schema's fields and extra="forbid"
        args_model = type(f"{tool_name}_args", (ArgModelBase, model),
                          {"model_config": ConfigDict(extra="forbid", arbitrary_types_allowed=True)})
        tool = Tool.from_function(_signature_fn(run, tool_name), name=tool_name, description=tool_description(tool_name),
                                  structured_output=False)
        built.append(tool.model_copy(update={"parameters": copy.deepcopy(TOOL_SCHEMAS[tool_name]),
                                             "fn_metadata": FuncMetadata(arg_model=args_model)}))
    return MCPServer(name, instructions=INSTRUCTIONS, tools=built)


def _signature_fn(run, name: str):
    """`run` with the tool's named parameters as its signature (what the SDK inspects)."""
    import functools
    import inspect

    params = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, annotation=str) for k in TOOL_SCHEMAS[name]["properties"]]

    @functools.wraps(run)
    def fn(**kwargs) -> str:
        return run(**kwargs)

    fn.__signature__ = inspect.Signature(params, return_annotation=str)
    fn.__name__ = name
    return fn


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
