"""The router's fallback classifier: a softmax over MiniLM embeddings of a message, for the messages
the rules do not decide (no need phrase, no constraint, no greeting pattern...).

Why it exists: the offline router's rules and its nearest-prototype TF-IDF classifier route a
fresh set of shopper openings at ~0.87 (docs/benchmarks.md, agent-router): the rules send every
message they cannot place to ``recommend``, which serves shoppers but answers smalltalk, out-of-scope
questions and vague openings with products. A linear model over sentence embeddings, trained on
the labelled messages we have, generalises across authors (left-one-set-out over the five openings
sets: ~0.94 on the set the rules never saw, against 0.873).

The weights ship with the package (``lumenrec/agent/data/intent_model.safetensors``, 6 x 384 + 6
floats and their metadata); :func:`train` rebuilds them from the labelled files with scikit-learn
(``python -m lumenrec.agent.intent_model``). At run time only the text encoder is needed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lumenrec.errors import ConfigError, MissingExtraError

log = logging.getLogger(__name__)

__all__ = ["IntentModel", "train", "read_rows", "rows_digest", "WEIGHTS", "TRAINING_FILES"]

DATA = Path(__file__).resolve().parent / "data"
WEIGHTS = DATA / "intent_model.safetensors"
_REPO = Path(__file__).resolve().parents[1]
# What the shipped weights were trained on: the router's own training messages, the labelled intent
# set, and the first five openings sets (each written by an author who never saw the router). Not the
# held-out intent set, and not openings_holdout4 (written after this model was frozen, measured once).
TRAINING_FILES = (
    "agent/data/router_train.jsonl",
    "tests/agent/data/intents.jsonl",
    "tests/agent/data/openings_dev_a.jsonl",
    "tests/agent/data/openings_dev_b.jsonl",
    "tests/agent/data/openings_holdout.jsonl",
    "tests/agent/data/openings_holdout2.jsonl",
    "tests/agent/data/openings_holdout3.jsonl",
)
# Inverse regularisation (5-fold CV on the router's training messages chose 16 for the older
# learned backend; kept, not re-tuned).
C = 16.0

_LOCK = threading.Lock()
_LOADED: dict[str, "IntentModel"] = {}


class IntentModel:
    """``scores(text) -> {intent: probability}`` from the shipped (or given) weights."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, classes: Sequence[str], meta: dict[str, Any] | None = None,
                 encoder: Any = None) -> None:
        if weights.ndim != 2 or weights.shape[0] != len(classes) or bias.shape != (len(classes),):
            raise ConfigError("weights", tuple(weights.shape), f"must be ({len(classes)}, d) with a bias of ({len(classes)},)")
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)  # (K, d); safetensors writes raw C-order bytes
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)  # (K,)
        self.classes = [str(c) for c in classes]
        self.meta = dict(meta or {})
        self._encoder = encoder

    @classmethod
    def load(cls, path: str | Path = WEIGHTS) -> "IntentModel":
        """The model at `path` (once per process for the shipped file)."""
        key = str(Path(path).resolve())
        with _LOCK:
            if key not in _LOADED:
                from safetensors import safe_open

                p = Path(path)
                if not p.is_file():
                    raise ConfigError("intent_model", str(p), "no such file; train it with `python -m lumenrec.agent.intent_model`")
                with safe_open(str(p), framework="numpy") as f:
                    meta = json.loads((f.metadata() or {}).get("lumenrec", "{}"))
                    weights, bias = f.get_tensor("weights"), f.get_tensor("bias")
                _LOADED[key] = cls(weights, bias, meta["classes"], meta)
            return _LOADED[key]

    @property
    def encoder(self):
        if self._encoder is None:
            from lumenrec.retriever.text_encoder import TextEncoder

            self._encoder = TextEncoder()
        return self._encoder

    def scores(self, text: str) -> dict[str, float]:
        x = self.encoder.encode([text])[0]  # (d,)
        z = self.weights @ x + self.bias  # (K,)
        p = np.exp(z - z.max())
        p /= p.sum()
        return {c: float(v) for c, v in zip(self.classes, p)}

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, classes=self.classes)
        save_file({"weights": self.weights, "bias": self.bias}, str(p), metadata={"lumenrec": json.dumps(meta)})
        return p


def read_rows(paths: Sequence[str | Path]) -> list[dict[str, str]]:
    """Labelled rows ({"text", "intent"}) of JSONL files; a bad line names its file and line."""
    rows = []
    for path in paths:
        for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                rows.append({"text": str(r["text"]), "intent": str(r["intent"])})
            except (ValueError, KeyError, TypeError) as e:
                raise ConfigError("training file", f"{path}:{i}", f"must be a JSON object with text and intent ({e})") from e
    return rows


def rows_digest(rows: Sequence[dict[str, str]]) -> str:
    """A short sha256 of labelled rows (what the shipped weights record, so a stale file is caught)."""
    return hashlib.sha256("\n".join(f"{r['intent']}\t{r['text']}" for r in rows).encode("utf-8")).hexdigest()[:16]


def train(rows: Sequence[dict[str, str]], c: float = C, encoder: Any = None) -> IntentModel:
    """Fit the softmax on `rows` (multinomial logistic regression, balanced classes)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as e:
        raise MissingExtraError("scikit-learn", "all", "training the router's intent model") from e
    if encoder is None:
        from lumenrec.retriever.text_encoder import TextEncoder

        encoder = TextEncoder()
    texts = [r["text"] for r in rows]
    X = encoder.encode(texts)  # (n, d)
    clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(X, [r["intent"] for r in rows])
    meta = {"c": c, "rows": len(rows), "rows_sha256": rows_digest(rows), "encoder": getattr(encoder, "model_version", "")}
    w, b = clf.coef_, clf.intercept_  # (K, d), (K,); two classes: one row, the second class's logit
    if len(clf.classes_) == 2:
        w, b = np.vstack([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])  # softmax of (-z/2, z/2) = sigmoid(z)
    return IntentModel(w, b, list(clf.classes_), meta, encoder=encoder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the router's fallback intent model from the labelled files.")
    ap.add_argument("--out", default=str(WEIGHTS))
    ap.add_argument("--c", type=float, default=C)
    a = ap.parse_args(argv)
    rows = read_rows([_REPO / f for f in TRAINING_FILES])
    model = train(rows, a.c)
    model.meta["files"] = list(TRAINING_FILES)
    print(f"trained on {len(rows)} rows -> {model.save(a.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
