"""LLM training narratives of the generative LUMEN model (issue 20): the resumable JSONL file and its narrator.

The writer here is a counting stand-in for the NarrativeGenerator (its own tests cover the LLM); what is
tested is the file: what is written, found again, left out, and refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from lumenrec.agent.llm.lumen_gen.examples import ExampleConfig, build_examples
from lumenrec.agent.llm.lumen_gen.narratives import FileNarrator, narrative_key, read_narratives
from lumenrec.errors import DataFormatError, DataNotFoundError

SEQS = [np.array([0, 1, 2, 3]), np.array([4, 5, 4, 5]), np.array([2, 3])]
USERS = ["u1", "u2", "u3"]
CFG = ExampleConfig(positions_per_user=2, narrative_fraction=1.0)


@dataclass
class _Res:
    text: str
    generator: str = "llm"
    model: str | None = "tiny-llm"


class CountingWriter:
    """Writes 'narrative N about TITLE'; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, kind, item, history, *, user_id="", critique=None):
        self.calls += 1
        return _Res(f"narrative {self.calls} about {item.title}")


def test_the_writer_fills_the_file_and_a_second_run_only_reads_it(tiny_catalog, tmp_path):
    path = tmp_path / "n.jsonl"
    writer = CountingWriter()
    first = FileNarrator(path, tiny_catalog, writer=writer)
    ex1 = build_examples(SEQS, USERS, tiny_catalog, CFG, narrator=first)
    narr1 = [e for e in ex1 if e.task == "narrative"]
    assert narr1 and writer.calls == len(narr1) == first.stats()["written"]
    assert all(e.narrator == "llm:tiny-llm" and e.narrative.startswith("narrative ") for e in narr1)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == len(narr1) and {r["target"] for r in lines} <= {it.id for it in tiny_catalog}
    # a later run (no writer) finds every narrative again: the same examples, nothing generated
    again = FileNarrator(path, tiny_catalog)
    ex2 = build_examples(SEQS, USERS, tiny_catalog, CFG, narrator=again)
    assert [(e.task, e.narrative) for e in ex2] == [(e.task, e.narrative) for e in ex1]
    assert again.stats() == {"in_file": len(narr1), "hits": len(narr1), "written": 0, "missing": 0}


def test_a_partly_written_file_trains_on_what_it_has(tiny_catalog, tmp_path):
    path = tmp_path / "n.jsonl"
    full = build_examples(SEQS, USERS, tiny_catalog, CFG, narrator=FileNarrator(path, tiny_catalog, writer=CountingWriter()))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1]) + "\n")  # only the first narrative survived
    part = FileNarrator(path, tiny_catalog)
    ex = build_examples(SEQS, USERS, tiny_catalog, CFG, narrator=part)
    assert sum(e.task == "narrative" for e in ex) == 1 and part.stats()["missing"] == len(lines) - 1
    # the item examples are the same: only narrative examples depend on the file
    assert [e for e in ex if e.task == "item"] == [e for e in full if e.task == "item"]


def test_the_time_budget_stops_the_writer_and_a_rerun_continues(tiny_catalog, tmp_path):
    path = tmp_path / "n.jsonl"
    w = CountingWriter()
    n = FileNarrator(path, tiny_catalog, writer=w, max_time_s=1e-9)  # no time even for the first one
    build_examples(SEQS, USERS, tiny_catalog, CFG, narrator=n)
    assert w.calls == 0 and not path.exists() and n.stats()["missing"] > 0
    w2 = CountingWriter()
    n2 = FileNarrator(path, tiny_catalog, writer=w2, max_time_s=60)
    build_examples(SEQS, USERS, tiny_catalog, CFG, narrator=n2)
    assert w2.calls == n.stats()["missing"] and n2.stats()["missing"] == 0


def test_an_offline_fallback_is_recorded_as_offline(tiny_catalog, tmp_path):
    class Falls(CountingWriter):
        def generate(self, *a, **k):
            return _Res("the offline narrator's words", generator="offline", model=None)

    n = FileNarrator(tmp_path / "n.jsonl", tiny_catalog, writer=Falls())
    ex = build_examples(SEQS, USERS, tiny_catalog, CFG, narrator=n)
    assert {e.narrator for e in ex if e.task == "narrative"} == {"offline"}


def test_keys_name_the_whole_example():
    k = narrative_key("purchase_reason", "u1", ["a", "b"], "c", "cheaper")
    assert k == narrative_key("purchase_reason", "u1", ["a", "b"], "c", "cheaper")
    others = [narrative_key("purchase_reason", "u2", ["a", "b"], "c", "cheaper"),
              narrative_key("purchase_reason", "u1", ["b", "a"], "c", "cheaper"),
              narrative_key("purchase_reason", "u1", ["a", "b"], "d", "cheaper"),
              narrative_key("purchase_reason", "u1", ["a", "b"], "c", None),
              narrative_key("endorsement", "u1", ["a", "b"], "c", "cheaper")]
    assert k not in others and len(set(others)) == len(others)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(DataNotFoundError, match="training-narratives"):
        read_narratives(tmp_path / "absent.jsonl")
    good = json.dumps({"key": "k1", "text": "fine"})
    torn = tmp_path / "torn.jsonl"
    torn.write_text(good + "\n" + '{"key": "k2", "te')  # a writer killed mid-line
    assert set(read_narratives(torn)) == {"k1"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n" + json.dumps({"key": "k2"}) + "\n" + good + "\n")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2"):
        read_narratives(bad)


def test_narrative_examples_can_be_repeated(tiny_catalog, tmp_path):
    path = tmp_path / "n.jsonl"
    once = build_examples(SEQS, USERS, tiny_catalog, CFG, narrator=FileNarrator(path, tiny_catalog, writer=CountingWriter()))
    cfg3 = ExampleConfig(positions_per_user=2, narrative_fraction=1.0, narrative_repeats=3)
    thrice = build_examples(SEQS, USERS, tiny_catalog, cfg3, narrator=FileNarrator(path, tiny_catalog))
    n1 = [e for e in once if e.task == "narrative"]
    assert [e for e in thrice if e.task == "narrative"] == [e for e in n1 for _ in range(3)]
    assert [e for e in thrice if e.task == "item"] == [e for e in once if e.task == "item"]
    from lumenrec.errors import ConfigError

    with pytest.raises(ConfigError, match="narrative_repeats"):
        ExampleConfig(narrative_repeats=0)
