"""lumenrec: an agent-style conversational recommender plugin.

A shopper chats; each turn an agent parses the message as a critique, retrieves catalogue items with
a trained retriever over a Chroma item index, and narrates why. Subpackages:

- ``lumenrec.data``: the data model, loaders for real formats, splits, the synthetic store, inpainting;
- ``lumenrec.retriever``: sequential models, ranking losses, the ILM item encoder, LUMEN, the item index;
- ``lumenrec.agent``: the conversational core (router, critique parser, sessions, narratives);
  ``lumenrec.agent.llm`` the language layer, ``lumenrec.agent.serving`` the HTTP API and demo app;
- ``lumenrec.tools``: the same capabilities as tools for LangChain, LlamaIndex, OpenAI and MCP;
- ``lumenrec.eval``: metrics, the evaluation protocol, baselines, replays; ``lumenrec.eval.bench`` the benchmarks.

The layers and their import direction: README, "Where things live".
"""

from lumenrec.errors import (
    CheckpointError,
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    ItemIndexError,
    LLMError,
    LumenrecError,
    MissingExtraError,
    ToolInputError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataFormatError",
    "DataNotFoundError",
    "ItemIndexError",
    "LLMError",
    "LumenrecError",
    "MissingExtraError",
    "ToolInputError",
    "__version__",
]
