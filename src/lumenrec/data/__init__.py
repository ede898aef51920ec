"""lumenrec's data layer: the data model, loaders for real formats, splits, the synthetic store."""

from lumenrec.data.benchmark import load_benchmark_pair, load_conversations
from lumenrec.data.io import LoadReport
from lumenrec.data.split import EvalSet, Split, leave_one_out, temporal_split
from lumenrec.data.types import (
    NARRATIVE_KINDS,
    Catalog,
    Conversation,
    Dataset,
    Interactions,
    Item,
    Narratives,
    Turn,
    UserSequence,
)

__all__ = [
    "Catalog",
    "Conversation",
    "Dataset",
    "EvalSet",
    "Interactions",
    "Item",
    "LoadReport",
    "NARRATIVE_KINDS",
    "Narratives",
    "Split",
    "Turn",
    "UserSequence",
    "leave_one_out",
    "load_benchmark_pair",
    "load_conversations",
    "temporal_split",
]
