"""Serving apps: the HTTP API (REST, SSE, OpenAI-compatible), its session stores, the Gradio demo
app, and the `serve` and `demo` commands."""
