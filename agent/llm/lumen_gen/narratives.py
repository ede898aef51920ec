"""Training narratives of the generative LUMEN model written by a local LLM, kept in a JSONL file.

Issue 20 asks for the narratives of the training examples from the best installed local LLM. The
1.5B model writes a purchase reason in ~7 s on one thread, so office-2014's ~2,300 narrative examples
take hours: more than one call. They are therefore written into a file, resumably and under a time
budget (``lumenrec llm training-narratives``), and training reads the file (``bench lumen_gen
--narratives FILE``, ``lumenrec build --generative-narratives FILE``)::

    {"key": "...", "user_id": "...", "target": "item id", "kind": "purchase_reason",
     "text": "...", "generator": "llm", "model": "qwen2.5-coder-1.5b-instruct", "seconds": 6.1}

A line's key is a digest of (kind, user, history ids, target id, critique): the same example in any
later run finds its narrative; an example whose line is missing gets no narrative example (never a
silent offline one), so a partly written file trains on the narratives it has, each recorded with the
generator that wrote it (the LLM's own, or ``offline`` where the grounding checker fell back).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lumenrec.errors import DataFormatError, DataNotFoundError

__all__ = ["narrative_key", "read_narratives", "FileNarrator", "write_training_narratives"]

log = logging.getLogger(__name__)


def narrative_key(kind: str, user_id: str, history_ids: Sequence[str], target_id: str, critique: str | None) -> str:
    """The digest naming one training narrative (catalogue ids, so it survives a re-indexed catalogue)."""
    blob = json.dumps([kind, str(user_id), [str(h) for h in history_ids], str(target_id), critique or ""],
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def read_narratives(path: str | Path) -> dict[str, dict[str, Any]]:
    """key -> record of a narratives file; a torn last line (a killed writer) is skipped with a warning,
    any other bad line is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such narratives file (write one with `lumenrec llm training-narratives`)")
    out: dict[str, dict[str, Any]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            key, text = rec["key"], rec["text"]
            if not isinstance(key, str) or not isinstance(text, str):
                raise TypeError("key and text must be strings")
        except (ValueError, KeyError, TypeError) as e:
            if n == len(lines):
                log.warning("%s: line %d is incomplete (a writer was stopped); ignoring it", path, n)
                continue
            raise DataFormatError(str(path), n, f"not a narrative record ({e})") from e
        out[key] = rec
    return out


@dataclass
class _Result:
    """The part of a NarrativeResult that :func:`build_examples` reads."""

    text: str
    generator: str
    model: str | None = None


class FileNarrator:
    """A narrator for :func:`~lumenrec.agent.llm.lumen_gen.examples.build_examples` that answers from a
    narratives file, and, given `writer` (a :class:`~lumenrec.agent.narrative.NarrativeGenerator`) and time
    left in `max_time_s`, writes the missing ones into it. A narrative it does not have is returned empty
    (the example gets none)."""

    def __init__(self, path: str | Path, catalog, *, writer=None, max_time_s: float | None = None) -> None:
        self.path, self.catalog, self.writer, self.max_time_s = Path(path), catalog, writer, max_time_s
        # without a writer the file must exist (read_narratives' error names it); a writer may start it
        self.records = read_narratives(self.path) if writer is None or self.path.is_file() else {}
        self.hits = self.written = self.missing = 0
        self._t0 = time.perf_counter()
        self._spent: list[float] = []

    def _time_left(self) -> bool:
        if self.writer is None:
            return False
        if self.max_time_s is None:
            return True
        elapsed = time.perf_counter() - self._t0
        per = max(self._spent[-20:]) if self._spent else 0.0  # room for one more slow narrative
        return elapsed + per < self.max_time_s

    def generate(self, kind: str, item, history, *, user_id: str = "", critique: str | None = None) -> _Result:
        key = narrative_key(kind, user_id, [h.id for h in history], item.id, critique)
        rec = self.records.get(key)
        if rec is None and self._time_left():
            t0 = time.perf_counter()
            res = self.writer.generate(kind, item, history, user_id=user_id, critique=critique)
            secs = time.perf_counter() - t0
            self._spent.append(secs)
            rec = {"key": key, "user_id": str(user_id), "target": item.id, "kind": kind, "text": res.text,
                   "generator": res.generator, "model": res.model, "seconds": round(secs, 2)}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:  # one line per narrative: a stopped run loses at most one
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            self.records[key] = rec
            self.written += 1
            if self.written % 25 == 0:
                log.info("training narratives: %d written this run (%.1f s each), %d in %s", self.written,
                         sum(self._spent) / len(self._spent), len(self.records), self.path)
        elif rec is not None:
            self.hits += 1
        if rec is None:
            self.missing += 1
            return _Result("", "missing")
        gen = "offline" if str(rec.get("generator", "")).startswith("offline") else str(rec.get("generator") or "llm")
        return _Result(rec["text"], gen, None if gen == "offline" else rec.get("model"))

    def stats(self) -> dict[str, int]:
        return {"in_file": len(self.records), "hits": self.hits, "written": self.written, "missing": self.missing}


def write_training_narratives(data: str, out: str | Path, *, model: str | None = None, threads: int = 1,
                              max_time_s: float | None = None, positions: int = 3, seed: int = 0,
                              prompt_version: str | None = None) -> dict[str, Any]:
    """Write (or continue writing) the LLM narratives of the examples that bench lumen_gen and the build make
    for `data` (training users outside its conversations, `positions` and `seed` as theirs); returns counts."""
    from lumenrec.agent.llm.backends import make_local_llm
    from lumenrec.agent.llm.lumen_gen.examples import ExampleConfig, build_examples
    from lumenrec.data.inpaint import InpaintConfig, Inpainter
    from lumenrec.data.registry import load_dataset
    from lumenrec.data.split import leave_one_out

    ds = load_dataset(data)
    cat = ds.catalog
    split = leave_one_out(ds.interactions)
    llm = make_local_llm(model, num_threads=threads, fallback=False)
    # the inpainting pipeline's narrator on this LLM, with the agent's prompt and answer length (bench narratives' local)
    inpaint = InpaintConfig(seed=seed, narrative_prompt=prompt_version or "narrative-v3", narrative_max_tokens=90)
    narrator = FileNarrator(out, cat, writer=Inpainter(cat, narrative_llm=llm, config=inpaint).narrator,
                            max_time_s=max_time_s)
    t0 = time.perf_counter()
    examples = build_examples(split.train, split.train_users, cat, ExampleConfig(positions_per_user=positions, seed=seed),
                              exclude_users={c.user_id for c in ds.conversations}, narrator=narrator)
    st = narrator.stats()
    return {"file": str(out), "model": getattr(llm, "model", None),
            "narratives_wanted": st["hits"] + st["written"] + st["missing"], **st,
            "narrative_examples": sum(e.task == "narrative" for e in examples), "wall_s": time.perf_counter() - t0,
            "done": st["missing"] == 0}
