"""The import direction of the layers (README, "Where things live"), enforced on every import
statement of the package, including the lazy ones inside functions.

Layers, lowest first; a layer may import itself and the layers listed for it, never a layer above:

    core (errors, polarity) < data < metrics (eval's metrics, protocol, baselines) < retriever
    < agent.llm (language layer) < agent (conversational core) < tools < agent.serving, eval (replay, ...)
    < build (`lumenrec build`: trains and writes a system) < eval.bench (benchmark scripts)
    < app (the CLI, quickstart and every area's command module)
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each layer may import (besides the standard library and third-party packages).
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "data": {"core", "data"},
    "metrics": {"core", "data", "metrics"},
    "retriever": {"core", "data", "metrics", "retriever"},
    "llm": {"core", "data", "metrics", "retriever", "llm"},
    "agent": {"core", "data", "metrics", "retriever", "llm", "agent"},
    "tools": {"core", "data", "metrics", "retriever", "llm", "agent", "tools"},
    "serving": {"core", "data", "metrics", "retriever", "llm", "agent", "tools", "serving"},
    "eval": {"core", "data", "metrics", "retriever", "llm", "agent", "tools", "eval"},
    "build": {"core", "data", "metrics", "retriever", "llm", "agent", "build"},
    "bench": {"core", "data", "metrics", "retriever", "llm", "agent", "tools", "serving", "eval", "build", "bench"},
    "app": {"core", "data", "metrics", "retriever", "llm", "agent", "tools", "serving", "eval", "build", "bench", "app"},
}
METRICS = {"lumenrec.eval", "lumenrec.eval.metrics", "lumenrec.eval.protocol", "lumenrec.eval.baselines"}
# Named exceptions, each with its reason. Keep this short: a new entry is a design decision.
EXCEPTIONS: dict[tuple[str, str], str] = {
    # REGEN-style inpainting produces data, but writes its texts with the agent's grounded narrator
    # and the retriever's training-critique synthesiser.
    ("lumenrec.data.inpaint", "agent"): "inpainting narrates with the agent's narrator",
    ("lumenrec.data.inpaint", "retriever"): "inpainting reuses the training-critique synthesiser",
    # The LLM router is a routing strategy of the core that lets a model drive the agent's tools.
    ("lumenrec.agent.llm_router", "tools"): "the tool-calling router drives the tools",
    # `python -m lumenrec.retriever.train` is the torchrun entry point; it shares `lumenrec train`'s parser.
    ("lumenrec.retriever.train", "app"): "the torchrun entry point parses like `lumenrec train`",
}


def layer_of(module: str) -> str | None:
    """The layer of a lumenrec module name; None for names outside lumenrec."""
    parts = module.split(".")
    if parts[0] != "lumenrec":
        return None
    sub = parts[1] if len(parts) > 1 else ""
    if sub in ("", "errors", "polarity"):
        return "core"
    if sub == "build" and len(parts) == 2:
        return "build"
    if sub in ("cli", "quickstart", "__main__") or parts[-1] == "commands" or parts[-1].endswith("_commands"):
        return "app"
    if module in METRICS:
        return "metrics"
    if sub == "agent" and len(parts) > 2 and parts[2] in ("llm", "serving"):
        return "llm" if parts[2] == "llm" else "serving"
    if sub == "eval" and len(parts) > 2 and parts[2] == "bench":
        return "bench"
    return {"data": "data", "retriever": "retriever", "agent": "agent", "tools": "tools", "eval": "eval"}.get(sub, sub)


def package_modules() -> dict[str, Path]:
    """Every module of the package, by name, from the pyproject package-dir mapping."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    out: dict[str, Path] = {}
    for pkg, folder in sorted(cfg["package-dir"].items(), key=lambda kv: -len(kv[0])):
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((pkg, *rel)).removesuffix(".__init__")
            out.setdefault(name, path)  # the more specific mapping wins
    return out


def imports_of(path: Path, modules: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every absolute import statement in a file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from lumenrec.eval import replay` imports the submodule lumenrec.eval.replay;
            # `from lumenrec.eval import evaluate` imports the package lumenrec.eval
            out += [(node.lineno, f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module)
                    for a in node.names]
    return out


def violations() -> list[str]:
    bad = []
    modules = package_modules()
    for name, path in sorted(modules.items()):
        mine = layer_of(name)
        for line, target in imports_of(path, set(modules)):
            theirs = layer_of(target)
            if theirs is None or theirs in ALLOWED[mine] or (name, theirs) in EXCEPTIONS:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line}: {name} ({mine}) imports {target} ({theirs})")
    return bad


def test_every_module_has_a_layer():
    for name in package_modules():
        assert layer_of(name) in ALLOWED, f"{name} belongs to no layer: add it to tests/test_layout.py"


def test_imports_follow_the_layers():
    bad = violations()
    assert not bad, "imports against the layer order (README, 'Where things live'):\n" + "\n".join(bad)


def test_exceptions_are_still_needed():
    """A named exception that no import uses any more must be removed."""
    modules = package_modules()
    for (name, layer), why in EXCEPTIONS.items():
        used = any(layer_of(t) == layer for _, t in imports_of(modules[name], set(modules)))
        assert used, f"exception ({name} -> {layer}: {why}) is no longer needed: remove it"


@pytest.mark.parametrize("source, target, allowed", [
    ("lumenrec.retriever.lumen", "lumenrec.agent.critique", False),
    ("lumenrec.agent.recommender", "lumenrec.agent.serving.server", False),
    ("lumenrec.agent.llm.backends", "lumenrec.agent.recommender", False),
    ("lumenrec.eval.replay", "lumenrec.eval.bench.agent", False),
    ("lumenrec.agent.serving.server", "lumenrec.agent.recommender", True),
    ("lumenrec.eval.bench.agent", "lumenrec.agent.serving.server", True),
    ("lumenrec.retriever.train", "lumenrec.eval.protocol", True),
    ("lumenrec.retriever.train", "lumenrec.eval.replay", False),
])
def test_the_rule_itself(source, target, allowed):
    """The checker can fail: known edges are classified the way the table says."""
    assert (layer_of(target) in ALLOWED[layer_of(source)]) is allowed
