"""`lumenrec ilm train` and `lumenrec lumen train`: fill configs, train, save a checkpoint, print JSON.

Both train on the leave-one-out TRAINING part of the dataset only (``Split.train``, i.e. every
sequence without its last two items); LUMEN's synthetic critiques target the held-out seq[-2].
Heavy imports happen inside the handlers so that ``lumenrec --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ilm", help="train the ILM Q-Former item encoder")
    isub = p.add_subparsers(dest="ilm_command", metavar="ACTION")
    t = isub.add_parser("train", help="train ILM on a dataset's training sequences and save a checkpoint")
    t.add_argument("--data", required=True, help="dataset name or path (e.g. office-2014)")
    t.add_argument("--seq-checkpoint", required=True, help="SASRec checkpoint dir: its item table is the CF input")
    t.add_argument("--out", required=True, help="checkpoint directory to write")
    t.add_argument("--losses", default="itc,ii,ui", help="comma-separated subset of itc,ii,ui (default %(default)s)")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--text-skip", action="store_true",
                   help="text-aligned vectors (for the soft-prompt adaptor or a critique-only index); "
                        "LUMEN is better without (see lumenrec.retriever.ilm)")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_ilm_train)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    q = sub.add_parser("lumen", help="train the critique-aware LUMEN retriever")
    lsub = q.add_subparsers(dest="lumen_command", metavar="ACTION")
    lt = lsub.add_parser("train", help="train LUMEN on synthetic training critiques and save a checkpoint")
    lt.add_argument("--data", required=True, help="dataset name or path (e.g. office-2014)")
    lt.add_argument("--seq-checkpoint", required=True, help="SASRec checkpoint dir (the same one ILM used)")
    lt.add_argument("--ilm-checkpoint", required=True, help="ILM checkpoint dir (item vectors)")
    lt.add_argument("--out", required=True, help="checkpoint directory to write")
    lt.add_argument("--loss", default="lambdarank", choices=["softmax", "sampled_softmax", "bpr", "warp", "lambdarank"])
    lt.add_argument("--epochs", type=int, default=20)
    lt.add_argument("--variants", type=int, default=2, help="synthetic critiques per training pair")
    lt.add_argument("--critique-dropout", type=float, default=0.3)
    lt.add_argument("--seed", type=int, default=0)
    lt.add_argument("--no-progress", action="store_true")
    lt.set_defaults(func=_lumen_train)
    q.set_defaults(func=lambda args: (q.print_help(), 2)[1])


def _ilm_train(args: argparse.Namespace) -> int:
    from lumenrec.data.registry import load_dataset
    from lumenrec.data.split import leave_one_out
    from lumenrec.errors import ConfigError
    from lumenrec.retriever.ilm import ILMConfig, ILMEncoder, build_text_features
    from lumenrec.retriever.sasrec import SASRecRetriever
    from lumenrec.retriever.text_encoder import TextEncoder

    losses = {x.strip() for x in args.losses.split(",") if x.strip()}
    if not losses or losses - {"itc", "ii", "ui"}:
        raise ConfigError("losses", args.losses, "must be a comma-separated subset of itc,ii,ui")
    ds = load_dataset(args.data)
    split = leave_one_out(ds.interactions)
    seq = SASRecRetriever.from_pretrained(args.seq_checkpoint, ds.catalog)
    cfg = ILMConfig(use_itc="itc" in losses, use_ii="ii" in losses, use_ui="ui" in losses, epochs=args.epochs,
                    seed=args.seed, progress=not args.no_progress, text_skip=args.text_skip)
    toks, mask, target = build_text_features(ds.catalog, TextEncoder())
    enc = ILMEncoder(cfg, ds.catalog.ids, seq.item_embeddings(), toks, mask, target)
    hist = enc.fit(split.train)
    enc.save(args.out)
    print(json.dumps({"out": args.out, "losses": cfg.losses, "last_epoch": hist[-1]}, indent=2))
    return 0


def _lumen_train(args: argparse.Namespace) -> int:
    from lumenrec.data.registry import load_dataset
    from lumenrec.data.split import leave_one_out
    from lumenrec.retriever.critique_synth import CritiqueSynthConfig, synthesize_examples
    from lumenrec.retriever.ilm import ILMEncoder
    from lumenrec.retriever.lumen import LumenConfig, LumenRetriever, transition_matrix
    from lumenrec.retriever.sasrec import SASRecRetriever
    from lumenrec.retriever.text_encoder import TextEncoder

    ds = load_dataset(args.data)
    cat = ds.catalog
    split = leave_one_out(ds.interactions)
    seq = SASRecRetriever.from_pretrained(args.seq_checkpoint, cat)
    ilm = ILMEncoder.load(args.ilm_checkpoint)
    enc = TextEncoder()
    ex = synthesize_examples(split.train_full, cat, CritiqueSynthConfig(seed=args.seed, variants=args.variants),
                             users=split.train_users, positions="last")
    pop = split.train_popularity().astype(float)
    lum = LumenRetriever(cat, ilm.item_vectors(), enc.encode_items(cat), seq=seq, text_encoder=enc, popularity=pop,
                         transitions=transition_matrix(split.train, len(cat)),
                         config=LumenConfig(loss=args.loss, epochs=args.epochs, critique_dropout=args.critique_dropout,
                                            seed=args.seed, progress=not args.no_progress))
    hist = lum.fit([e.history for e in ex], [e.text for e in ex], [e.target for e in ex], popularity=pop)
    lum.save(args.out, extra_config={"seq_checkpoint": str(args.seq_checkpoint), "ilm_checkpoint": str(args.ilm_checkpoint)})
    print(json.dumps({"out": args.out, "examples": len(ex), "last_epoch": hist[-1], "mix": lum.mix_weights()}, indent=2))
    return 0
