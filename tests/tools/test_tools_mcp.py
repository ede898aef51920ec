"""MCP surface: `python -m lumenrec mcp` spoken to by the official MCP Python client, over stdio and
over streamable HTTP on 127.0.0.1 (real subprocesses, real transports)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402

from lumenrec.tools.core import TOOL_NAMES  # noqa: E402

ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
       "PYTHONUNBUFFERED": "1", **({"LUMENREC_CACHE_DIR": os.environ["LUMENREC_CACHE_DIR"]}
                                  if "LUMENREC_CACHE_DIR" in os.environ else {})}


@pytest.fixture(scope="module")
def catalog():
    from lumenrec.data.registry import load_dataset

    return load_dataset("synthetic").catalog


def _text(result) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def _exercise(client, catalog) -> None:
    """What an MCP host does: list the tools, call them, read isError. Works on Client and ClientSession."""
    from lumenrec.tools.core import TOOL_SCHEMAS

    listed = await client.list_tools()
    names = {t.name for t in listed.tools}
    assert names == set(TOOL_NAMES)
    for t in listed.tools:  # the one schema source, descriptions and additionalProperties false included
        assert t.input_schema == TOOL_SCHEMAS[t.name], t.name
        assert "Call this" in t.description
    res = await client.call_tool("recommend", {"session_id": "mcp1", "request": "gel pens"})
    assert not res.is_error
    ids = re.findall(r"^(\S+) \| ", _text(res), re.M)
    assert ids and all(i in catalog for i in ids)
    brand = catalog.get(ids[0]).brand
    res2 = await client.call_tool("refine_with_critique", {"session_id": "mcp1", "critique": f"not {brand} again"})
    ids2 = re.findall(r"^(\S+) \| ", _text(res2), re.M)
    assert not res2.is_error and ids2 and all(catalog.get(i).brand != brand for i in ids2)
    # tool errors are errors: isError true and a sentence saying what to send instead
    for name, args, expect in [
        ("item_details", {"item_id": "NOT-AN-ITEM"}, "not an item of the catalogue"),
        ("recommend", {"session_id": "mcp1", "request": "   "}, "non-empty string"),
        ("explain_item", {"session_id": "mcp-fresh", "item_ref": "1"}, "call recommend first"),
        ("refine_with_critique", {"session_id": "mcp-fresh", "critique": "cheaper"}, "call recommend first"),
        ("explain_item", {"session_id": "mcp1", "item_ref": "99"}, f"between 1 and {len(ids2)}"),
        ("recommend", {"session_id": "mcp1", "request": "pens", "colour": "red"}, "colour"),
        ("recommend", {"session_id": "mcp1"}, "request"),
    ]:
        bad = await client.call_tool(name, args)
        assert bad.is_error, (name, args, _text(bad))
        assert expect in _text(bad), (name, args, _text(bad))
    ok = await client.call_tool("explain_item", {"session_id": "mcp1", "item_ref": "2"})
    assert not ok.is_error and re.findall(r"^(\S+) \| ", _text(ok), re.M) == [ids2[1]]


@pytest.mark.integration
def test_mcp_over_stdio(catalog):
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "lumenrec", "mcp"], env=ENV)

    async def main():
        with anyio.fail_after(90):
            async with Client(params) as client:
                await _exercise(client, catalog)
            # the same through the protocol-level ClientSession over the stdio transport
            from mcp import ClientSession
            from mcp.client.stdio import stdio_client

            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                await _exercise(session, catalog)

    anyio.run(main)


from netutil import free_port as _free_port  # noqa: E402
from netutil import stop_process  # noqa: E402


@pytest.mark.integration
def test_mcp_over_streamable_http(catalog):
    from mcp.client import Client

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lumenrec", "mcp", "--transport", "http", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **ENV})
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"mcp server exited: {proc.stderr.read().decode()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        else:
            pytest.fail("mcp http server did not come up in 90 s")

        async def main():
            with anyio.fail_after(90):
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    await _exercise(client, catalog)
                from mcp import ClientSession
                from mcp.client.streamable_http import streamable_http_client

                async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as streams:
                    async with ClientSession(streams[0], streams[1]) as session:
                        await session.initialize()
                        await _exercise(session, catalog)

        anyio.run(main)
    finally:
        stop_process(proc, timeout_s=10)
