"""Fixtures shared by the HTTP API tests: a recommender over the tiny catalogue with its sessions in
SQLite, and a loopback test client of the app serving it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def rec(tmp_path):
    from server_fakes import make_recommender

    from lumenrec.agent.serving.store import SQLiteSessionStore

    return make_recommender(store=SQLiteSessionStore(tmp_path / "s.db"))


@pytest.fixture
def client(rec):
    pytest.importorskip("fastapi")
    from server_fakes import local_client

    from lumenrec.agent.serving.server import ServeConfig, create_app

    return local_client(create_app(rec, ServeConfig(rate_limit_per_min=0)))
