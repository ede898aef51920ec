"""Line-oriented reading with exact error places, and the `--skip-bad` bookkeeping.

Every loader reads through :func:`iter_records`: a record that does not parse raises
:class:`~lumenrec.errors.DataFormatError` naming ``file:line`` and the reason, unless the caller
asked to skip bad records, in which case the record is counted and described in a
:class:`LoadReport` (nothing is dropped silently).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from lumenrec.errors import DataFormatError, DataNotFoundError

__all__ = ["LoadReport", "open_text", "iter_records", "sha256_file"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class LoadReport:
    """What a load read and what it skipped (with the place and reason of each skipped record)."""

    path: str
    records: int = 0
    skipped: list[tuple[int | None, str]] = field(default_factory=list)

    def skip(self, line: int | None, reason: str) -> None:
        self.skipped.append((line, reason))

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def reasons(self) -> dict[str, int]:
        """Skipped-record counts by reason (the part of the reason before the first ':')."""
        return dict(Counter(r.split(":")[0] for _, r in self.skipped))

    def summary(self) -> str:
        if not self.skipped:
            return f"{self.path}: {self.records} records, none skipped"
        first = ", ".join(f"line {ln}: {r}" for ln, r in self.skipped[:3])
        return f"{self.path}: {self.records} records, {self.num_skipped} skipped ({first}{', ...' if self.num_skipped > 3 else ''})"

    def merge(self, other: "LoadReport") -> None:
        self.records += other.records
        self.skipped.extend(other.skipped)


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a text file, transparently gunzipping `*.gz`. Missing files raise DataNotFoundError."""
    p = Path(path)
    if not p.exists():
        raise DataNotFoundError(f"{p}: no such file")
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", errors="strict")
    return open(p, encoding="utf-8", errors="strict")


def iter_records(
    path: str | Path,
    parse: Callable[[str, int], T],
    *,
    skip_bad: bool = False,
    report: LoadReport | None = None,
) -> Iterator[T]:
    """Yield `parse(line, lineno)` for every non-blank line of a (possibly gzipped) text file.

    `parse` raises ValueError/KeyError/TypeError (or DataFormatError) for a bad record. With
    `skip_bad=False` that becomes a DataFormatError at ``path:lineno``; with `skip_bad=True` the
    record is recorded in `report` and reading goes on.
    """
    report = report if report is not None else LoadReport(str(path))
    p = Path(path)
    if not p.exists():
        raise DataNotFoundError(f"{p}: no such file")
    # Binary lines decoded one by one, so a non-UTF-8 byte is reported at its exact line.
    with (gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")) as f:
        lineno = 0
        while True:
            try:
                raw = f.readline()
            except (EOFError, OSError) as e:  # truncated or corrupt gzip
                raise DataFormatError(str(path), lineno + 1, f"file is truncated or corrupt ({e})") from e
            if not raw:
                break
            lineno += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                reason = f"not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})"
                if not skip_bad:
                    raise DataFormatError(str(path), lineno, reason) from e
                report.skip(lineno, reason)
                continue
            if not line.strip():
                continue
            try:
                rec = parse(line, lineno)
            except DataFormatError as e:
                if not skip_bad:
                    raise
                report.skip(lineno, e.reason if e.field is None else f"field {e.field!r}: {e.reason}")
                continue
            except (ValueError, KeyError, TypeError, SyntaxError, AttributeError) as e:
                if not skip_bad:
                    raise DataFormatError(str(path), lineno, _describe(e)) from e
                report.skip(lineno, _describe(e))
                continue
            report.records += 1
            yield rec
    if report.skipped:
        log.warning("%s", report.summary())


def _describe(e: BaseException) -> str:
    if isinstance(e, KeyError):
        return f"missing field {e.args[0]!r}"
    return f"{type(e).__name__}: {e}"


def line_of_key(text: str, key: str) -> int | None:
    """1-based line where the JSON object key `"key":` first appears in `text` (for error places)."""
    pos = text.find(f'"{key}":')
    return None if pos < 0 else text.count("\n", 0, pos) + 1


def json_error_place(e: Any) -> int | None:
    return getattr(e, "lineno", None)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (checkpoint and download integrity checks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
