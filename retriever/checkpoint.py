"""Checkpoint directories of the sequential retriever: inference files plus a resumable training state.

Layout of a checkpoint directory::

    config.json          {"model": SASRecConfig, "train": TrainConfig, "dataset": name, "lumenrec_version": ...}
    item_ids.json        catalogue ids in index order (model index = position + 1)
    model.safetensors    the BEST weights (what inference loads)
    metrics.json         best validation metrics (+ test metrics once training finished)
    resume.safetensors   current weights ("model.*"), optimizer tensors ("optim.*"), RNG state ("rng.*")
    resume.json          epoch, step, best metric, patience counter, optimizer hyper-parameters
    checksums.json       sha256 of every other file, verified on load

Nothing is pickled. A directory is written to a temporary sibling and swapped in with
``os.replace``, so a crash never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from lumenrec.data.io import sha256_file
from lumenrec.errors import CheckpointError

log = logging.getLogger(__name__)

__all__ = ["save_checkpoint", "load_model", "load_resume_state", "verify_checkpoint", "read_json",
           "optimizer_to_flat", "optimizer_from_flat"]

MODEL_FILE = "model.safetensors"
RESUME_TENSORS = "resume.safetensors"
RESUME_JSON = "resume.json"
CHECKSUMS = "checksums.json"
REQUIRED = ("config.json", "item_ids.json", MODEL_FILE, CHECKSUMS)



def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def recover_interrupted_swap(directory: str | Path) -> bool:
    """Undo a swap cut between its two renames (old moved aside, new not yet in place).

    `save_checkpoint` moves the previous checkpoint to ``.<name>.old-*/ckpt`` before renaming the
    new one in; a kill between the two leaves no directory under the final name. The previous,
    complete checkpoint is moved back (the newest if several). Returns whether it recovered one.
    """
    directory = Path(directory)
    if directory.exists() or not directory.parent.is_dir():
        return False
    olds = sorted((p / "ckpt" for p in directory.parent.glob(f".{directory.name}.old-*") if (p / "ckpt").is_dir()),
                  key=lambda p: p.stat().st_mtime)
    if not olds:
        return False
    os.replace(olds[-1], directory)
    for p in olds[:-1]:
        shutil.rmtree(p.parent, ignore_errors=True)
    shutil.rmtree(olds[-1].parent, ignore_errors=True)
    log.warning("%s: recovered the previous checkpoint after an interrupted swap", directory)
    return True


def save_checkpoint(directory: str | Path, *, model_state: dict[str, Tensor], config: dict[str, Any],
                    item_ids: list[str], metrics: dict[str, Any] | None = None,
                    resume_tensors: dict[str, Tensor] | None = None, resume_info: dict[str, Any] | None = None) -> Path:
    """Write a complete checkpoint directory atomically (see the module docstring)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_swap(directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        _write_json(tmp / "config.json", config)
        _write_json(tmp / "item_ids.json", [str(i) for i in item_ids])
        save_file({k: v.detach().contiguous().cpu() for k, v in model_state.items()}, str(tmp / MODEL_FILE))
        _write_json(tmp / "metrics.json", metrics or {})
        if resume_tensors is not None:
            save_file({k: v.detach().contiguous().cpu() for k, v in resume_tensors.items()}, str(tmp / RESUME_TENSORS))
            _write_json(tmp / RESUME_JSON, resume_info or {})
        sums = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        _write_json(tmp / CHECKSUMS, sums)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700 dirs (and safetensors 0600 files): use normal modes
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        old = None
        if directory.exists():  # rename cannot replace a non-empty directory: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / "ckpt")
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent}: missing file {path.name}") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e


def verify_checkpoint(directory: str | Path, files: tuple[str, ...] = REQUIRED) -> dict[str, str]:
    """Check that `files` exist and match checksums.json; CheckpointError naming the first problem."""
    directory = Path(directory)
    recover_interrupted_swap(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory does not exist")
    for name in files:
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory}: missing file {name} (incomplete checkpoint)")
    sums = read_json(directory / CHECKSUMS)
    for name in files:
        if name == CHECKSUMS:
            continue
        if name not in sums:
            raise CheckpointError(f"{directory}: checksums.json has no entry for {name}")
        actual = sha256_file(directory / name)
        if actual != sums[name]:
            raise CheckpointError(f"{directory}: sha256 mismatch for {name} (file corrupt or modified): "
                                  f"expected {sums[name][:12]}..., got {actual[:12]}...")
    return sums


def _load_tensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from e


def load_model(directory: str | Path):
    """(SASRec in eval mode, item ids, full config dict) from a verified checkpoint directory."""
    from lumenrec.retriever.sasrec import SASRec, SASRecConfig
    from lumenrec.errors import ConfigError

    directory = Path(directory)
    verify_checkpoint(directory)
    cfg = read_json(directory / "config.json")
    item_ids = read_json(directory / "item_ids.json")
    if "model" not in cfg:
        raise CheckpointError(f"{directory}/config.json: no 'model' section")
    try:
        mcfg = SASRecConfig.from_dict(cfg["model"])
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{directory}/config.json: bad model config ({e})") from e
    if len(item_ids) != mcfg.num_items:
        raise CheckpointError(f"{directory}: item_ids.json has {len(item_ids)} ids but the model has {mcfg.num_items} items")
    model = SASRec(mcfg)
    try:
        model.load_state_dict(_load_tensors(directory / MODEL_FILE), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{directory}/{MODEL_FILE}: weights do not fit the model config ({e})") from e
    return model.eval(), [str(i) for i in item_ids], cfg


def load_resume_state(directory: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(resume tensors, resume info) of a checkpoint, checksums verified."""
    directory = Path(directory)
    verify_checkpoint(directory, REQUIRED + (RESUME_TENSORS, RESUME_JSON))
    return _load_tensors(directory / RESUME_TENSORS), read_json(directory / RESUME_JSON)


def optimizer_to_flat(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors ("optim.<param>.<key>") and a JSON-able rest."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in state["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, Tensor], info: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_flat`."""
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        if not name.startswith("optim."):
            continue
        _, pid, k = name.split(".", 2)
        state.setdefault(int(pid), {})[k] = v
    for pid, st in info.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    groups = info["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}
