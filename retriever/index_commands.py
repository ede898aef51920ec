"""`lumenrec index build|query|info`: build, query and inspect the Chroma item index.

    lumenrec index build --data office-2014 --text-only --path ./idx
    lumenrec index query --path ./idx "black ink, not HP" --k 10 --exclude-brand HP
    lumenrec index info --path ./idx

`--host/--port` switch any of them to a running `chroma run` server instead of a local directory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

__all__ = ["register", "vectors_from_checkpoint"]


def vectors_from_checkpoint(checkpoint_dir: str | Path, catalog) -> tuple[np.ndarray, str]:
    """HOOK for trained item encoders: item vectors (N, d) aligned with `catalog`, and the model
    version string the index records (queries must then come from the same checkpoint).

    Delegates to the ILM code (`lumenrec.retriever.ilm.ilm_vectors_from_checkpoint`) when present.
    """
    from lumenrec.errors import CheckpointError

    try:
        from lumenrec.retriever.ilm import ilm_vectors_from_checkpoint
    except ImportError as e:
        raise CheckpointError(f"building the index from a trained checkpoint ({checkpoint_dir}) needs the ILM "
                              f"encoder, which is not available ({e}); use --text-only for frozen text vectors") from e
    if not Path(checkpoint_dir).is_dir():
        raise CheckpointError(f"checkpoint directory {checkpoint_dir} does not exist; "
                              "use --text-only for frozen text-encoder vectors")
    return ilm_vectors_from_checkpoint(checkpoint_dir, catalog)


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path", help="directory of the embedded Chroma store")
    p.add_argument("--host", help="use a Chroma server at this host instead of --path")
    p.add_argument("--port", type=int, default=8000, help="Chroma server port (with --host; default 8000)")
    p.add_argument("--ssl", action="store_true", help="talk HTTPS to the Chroma server")
    p.add_argument("--prefix", default="lumenrec-items", help="collection name prefix (default lumenrec-items)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build, query and inspect the Chroma item index")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION")

    b = isub.add_parser("build", help="embed a catalogue and (re)build the index atomically")
    b.add_argument("--data", required=True, help="dataset name or path (e.g. office-2014)")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--text-only", action="store_true", help="frozen text-encoder vectors (the default)")
    src.add_argument("--checkpoint", help="a trained checkpoint directory (ILM vectors)")
    b.add_argument("--distance", choices=["cosine", "ip"], default="cosine")
    b.add_argument("--batch-size", type=int, default=1000, help="rows per Chroma write")
    _add_store_args(b)
    b.set_defaults(func=_build)

    q = isub.add_parser("query", help="top-k items for a text query, with optional filters")
    q.add_argument("text", help="what the shopper asks for")
    q.add_argument("--k", type=int, default=10)
    q.add_argument("--include-brand", action="append", default=[], metavar="BRAND")
    q.add_argument("--exclude-brand", action="append", default=[], metavar="BRAND")
    q.add_argument("--include-category", action="append", default=[], metavar="CATEGORY")
    q.add_argument("--exclude-category", action="append", default=[], metavar="CATEGORY")
    q.add_argument("--max-price", type=float)
    q.add_argument("--min-price", type=float)
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_store_args(q)
    q.set_defaults(func=_query)

    i = isub.add_parser("info", help="print the active collection, item count, model version, disk size")
    _add_store_args(i)
    i.set_defaults(func=_info)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _config(args: argparse.Namespace, **kw):
    from lumenrec.errors import ConfigError
    from lumenrec.retriever.index import IndexConfig

    if args.host:
        return IndexConfig(backend="http", host=args.host, port=args.port, ssl=args.ssl,
                           collection_prefix=args.prefix, **kw)
    if not args.path:
        raise ConfigError("path", None, "give --path DIR (embedded store) or --host HOST (Chroma server)")
    return IndexConfig(backend="persistent", path=args.path, collection_prefix=args.prefix, **kw)


def _build(args: argparse.Namespace) -> int:
    from lumenrec.data.registry import load_dataset
    from lumenrec.retriever.index import ItemIndex

    cfg = _config(args, distance=args.distance, batch_size=args.batch_size)
    ds = load_dataset(args.data, with_conversations=False)
    if args.checkpoint:
        vectors, model_version = vectors_from_checkpoint(args.checkpoint, ds.catalog)
    else:
        from lumenrec.retriever.text_encoder import TextEncoder

        enc = TextEncoder()
        vectors, model_version = enc.encode_items(ds.catalog), enc.model_version
    info = ItemIndex(cfg).build(ds.catalog, vectors, model_version, checkpoint=args.checkpoint)
    print(json.dumps(info, indent=2))
    return 0


def _query(args: argparse.Namespace) -> int:
    from lumenrec.retriever.index import ItemIndex, constraints_to_where
    from lumenrec.retriever.text_encoder import TextEncoder

    index = ItemIndex(_config(args))
    info = index.info()  # fails clearly before loading the encoder when there is no index
    enc = TextEncoder()
    where = constraints_to_where(args.include_brand, args.exclude_brand, args.include_category,
                                 args.exclude_category, args.max_price, args.min_price)
    ids, scores = index.query(enc.encode([args.text])[0], args.k, where=where, model_version=enc.model_version)
    docs = index.get_documents(ids)
    rows = [{"rank": r + 1, "id": i, "score": round(float(s), 4), "title": docs.get(i, ("", {}))[0],
             "brand": docs.get(i, ("", {}))[1].get("brand", "")} for r, (i, s) in enumerate(zip(ids, scores))]
    if args.json:
        print(json.dumps({"index": info["collection"], "where": where, "results": rows}, indent=2))
    else:
        for row in rows:
            print(f"{row['rank']:>3}  {row['score']:.4f}  {row['id']:<14} {row['brand'][:16]:<16} {row['title'][:80]}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from lumenrec.retriever.index import ItemIndex

    print(json.dumps(ItemIndex(_config(args)).info(), indent=2))
    return 0
