"""`lumenrec index build|query|info` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from lumenrec.cli import main
from lumenrec.retriever.index import IndexConfig, ItemIndex
from lumenrec.retriever.text_encoder import TextEncoder, TextEncoderConfig


def test_index_query_and_info_cli(tiny_catalog, tmp_path, capsys):
    enc = TextEncoder(TextEncoderConfig(cache_dir=str(tmp_path / "cache")))
    path = str(tmp_path / "idx")
    ItemIndex(IndexConfig(path=path)).build(tiny_catalog, enc.encode_items(tiny_catalog, progress=False),
                                            enc.model_version, progress=False)
    assert main(["index", "info", "--path", path]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 6 and info["model_version"] == enc.model_version
    assert main(["index", "query", "--path", path, "black ink cartridge", "--k", "2", "--json"]) == 0
    ids = [r["id"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert set(ids) == {"t1", "t2"}
    assert main(["index", "query", "--path", path, "black ink cartridge", "--k", "1", "--exclude-brand", "HP", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in out["results"]] == ["t2"] and out["where"] == {"brand": {"$nin": ["HP"]}}


def test_index_cli_errors_are_clear(tmp_path, capsys):
    assert main(["index", "info", "--path", str(tmp_path / "none")]) == 1
    assert "build one first" in capsys.readouterr().err
    assert main(["index", "info"]) == 1
    assert "--path" in capsys.readouterr().err


def test_build_from_checkpoint_is_a_clear_hook(tmp_path, capsys):
    from lumenrec.retriever.index_commands import vectors_from_checkpoint
    from lumenrec.errors import CheckpointError

    with pytest.raises(CheckpointError, match="--text-only"):
        vectors_from_checkpoint(tmp_path / "missing", None)
