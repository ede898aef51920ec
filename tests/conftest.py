"""Shared fixtures. Real data is read from ../shared/data (never committed); tests that need it
skip with a reason where that path is absent (a fresh user machine)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Hermetic: a system built on this machine (~/.cache/lumenrec/builds) must not change what
# Recommender.from_dataset returns in tests; tests that want a build make their own.
os.environ["LUMENREC_BUILDS_DIR"] = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"lumenrec-test-builds-{os.getpid()}")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # shared test helpers: `from netutil import free_port`
SHARED_DATA = Path(os.environ.get("LUMENREC_DATA_DIR") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: the real datasets are not shipped with lumenrec."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available at {SHARED_DATA} (set LUMENREC_DATA_DIR to run this test)")
    return SHARED_DATA


@pytest.fixture
def tiny_catalog():
    """Six items with a known structure: two brands, two categories, prices."""
    from lumenrec.data import Catalog, Item

    return Catalog([
        Item("p1", "Blue ballpoint pen, 12 pack", "Bic", ["Office", "Writing", "Pens"], price=3.5),
        Item("p2", "Black gel pen, 4 pack", "Pilot", ["Office", "Writing", "Pens"], price=6.0),
        Item("n1", "Yellow sticky notes, 3x3 in", "Post-it", ["Office", "Paper", "Notes"], price=4.0),
        Item("n2", "Neon sticky notes, 12 pads", "Post-it", ["Office", "Paper", "Notes"], price=9.0),
        Item("t1", "HP 63 black ink cartridge", "HP", ["Office", "Ink", "Inkjet"], price=24.0),
        Item("t2", "Canon PG-245 black ink", "Canon", ["Office", "Ink", "Inkjet"], price=19.0),
    ])


@pytest.fixture
def rng():
    return np.random.default_rng(0)
