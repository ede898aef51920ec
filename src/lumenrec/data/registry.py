"""Where datasets live and how a name becomes a loaded :class:`~lumenrec.data.types.Dataset`.

Names: ``synthetic`` (generated, offline default), ``office-2014``, ``beauty-2014``,
``grocery-2014``, ``office-2018``; or a path to a directory/file in a supported format.

The data root is searched in this order: ``$LUMENREC_DATA_DIR``; ``../shared/data`` beside the
current directory and beside the source checkout; the download cache
``$LUMENREC_CACHE_DIR/data`` (default ``~/.cache/lumenrec/data``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lumenrec.data.types import Dataset
from lumenrec.errors import DataNotFoundError

__all__ = ["DATASETS", "data_roots", "find_dataset_dir", "load_dataset", "cache_dir"]

log = logging.getLogger(__name__)

# name -> directory name under a data root (the layout of ../shared/data)
DATASETS = {
    "office-2014": "amazon-office-2014",
    "beauty-2014": "amazon-beauty-2014",
    "grocery-2014": "amazon-grocery-2014",
    "office-2018": "amazon-office-2018",
    "regen-office-dev": "regen-office-dev",
}


def cache_dir() -> Path:
    """lumenrec's cache root (downloads, dequantized models, generated stores)."""
    return Path(os.environ.get("LUMENREC_CACHE_DIR") or Path.home() / ".cache" / "lumenrec")


def build_dir(data: str) -> Path:
    """Where `lumenrec build --data NAME` writes by default, and where `Recommender.from_dataset(NAME)`
    looks for a built system before falling back to the text-only baseline."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(data))
    return Path(os.environ.get("LUMENREC_BUILDS_DIR") or cache_dir() / "builds") / safe


def data_roots() -> list[Path]:
    roots = []
    if os.environ.get("LUMENREC_DATA_DIR"):
        roots.append(Path(os.environ["LUMENREC_DATA_DIR"]))
    roots.append(Path.cwd().parent / "shared" / "data")
    roots.append(Path(__file__).resolve().parents[3].parent / "shared" / "data")
    roots.append(cache_dir() / "data")
    seen, out = set(), []
    for r in roots:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def find_dataset_dir(name: str) -> Path:
    """The directory of a named dataset, or DataNotFoundError listing where it looked."""
    sub = DATASETS.get(name)
    if sub is None:
        raise DataNotFoundError(f"unknown dataset {name!r}; known: synthetic, {', '.join(DATASETS)} or a path")
    for root in data_roots():
        if (root / sub).is_dir():
            return root / sub
    looked = ", ".join(str(r / sub) for r in data_roots())
    raise DataNotFoundError(f"dataset {name!r} not found (looked in {looked}); "
                            f"run `lumenrec data download {name}` or set LUMENREC_DATA_DIR")


def load_dataset(name: str, *, skip_bad: bool = False, with_conversations: bool = True) -> Dataset:
    """Load a dataset by name or path (see the module docstring)."""
    from lumenrec.data.benchmark import load_benchmark_pair, load_conversations

    if name == "synthetic" or name.startswith("synthetic:"):
        from lumenrec.data.synthetic import SyntheticConfig, generate

        kw = {}
        if ":" in name:  # e.g. synthetic:num_items=5000,seed=3
            for part in name.split(":", 1)[1].split(","):
                k, v = part.split("=")
                kw[k.strip()] = int(v)
        return generate(SyntheticConfig(**kw))
    p = Path(name)
    if not p.exists():
        p = find_dataset_dir(name)
    if p.is_dir() and list(p.glob("*.inter.json")):
        ds = load_benchmark_pair(p, skip_bad=skip_bad)
        if with_conversations and name in ("office-2014",):
            try:
                conv_dir = find_dataset_dir("regen-office-dev")
                ds.conversations = load_conversations(conv_dir / "conversations.jsonl", ds.catalog)
            except DataNotFoundError:
                log.info("regen-office-dev conversations not found; office-2014 loaded without them")
        elif with_conversations and (p / "conversations.jsonl").is_file():  # e.g. a saved synthetic store
            ds.conversations = load_conversations(p / "conversations.jsonl", ds.catalog, skip_bad=skip_bad)
        return ds
    from lumenrec.data import amazon_raw  # raw Amazon 2014/2018 and REGEN files

    return amazon_raw.load_path(p, skip_bad=skip_bad)
