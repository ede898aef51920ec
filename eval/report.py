"""Writing benchmark results: JSON under docs/results/ and one section per benchmark in
docs/benchmarks.md (each section lives between markers, so benchmarks update their own part)."""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

__all__ = ["docs_dir", "write_json", "update_section", "publish", "markdown_table", "machine_info"]


def docs_dir() -> Path:
    """The repository's docs/ folder (or $LUMENREC_DOCS_DIR)."""
    if os.environ.get("LUMENREC_DOCS_DIR"):
        return Path(os.environ["LUMENREC_DOCS_DIR"])
    return Path(__file__).resolve().parents[1] / "docs"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def machine_info() -> dict[str, Any]:
    import torch

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def write_json(name: str, data: dict[str, Any]) -> Path:
    """docs/results/<name>.json, written atomically."""
    path = docs_dir() / "results" / f"{name}.json"
    _atomic_write(path, json.dumps(data, indent=2, default=float) + "\n")
    return path


def update_section(name: str, markdown: str, title: str | None = None) -> Path:
    """Replace (or append) the section of docs/benchmarks.md between `<!-- bench:name -->` markers."""
    path = docs_dir() / "benchmarks.md"
    text = path.read_text(encoding="utf-8") if path.exists() else (
        "# lumenrec benchmarks\n\nEvery number here was produced on this project's machines by the command its "
        "section names; the JSON beside each lives in `docs/results/`.\n")
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{('## ' + title + chr(10) + chr(10)) if title else ''}{markdown.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    _atomic_write(path, text)
    return path


def publish(name: str, result: dict[str, Any], markdown: str, title: str) -> None:
    """docs/results/<name>.json and its docs/benchmarks.md section (marker `name` with '-' for '_'),
    headed by the command that produced it (``result["command"]``)."""
    write_json(name, result)
    update_section(name.replace("_", "-"), f"Command: `{result['command']}`\n\n" + markdown, title)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".4f") -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return "" if v is None else str(v)

    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(out)
