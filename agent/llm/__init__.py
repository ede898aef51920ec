"""The language-model layer: LLM backends (local and OpenAI-compatible), our OpenAI-compatible LLM
server, ILM phase-2 soft prompts, and the `lumenrec llm` commands."""
