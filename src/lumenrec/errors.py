"""The exception tree of lumenrec: every error the library raises on purpose is one of these.

    LumenrecError
    ├── ConfigError            a config field has a bad value (names the field)
    ├── DataFormatError        an input file does not fit its format (names file:line and field)
    ├── DataNotFoundError      a dataset path or file is missing
    ├── MissingExtraError      an optional dependency is not installed (names the pip extra)
    ├── CheckpointError        a checkpoint directory is missing, incomplete or corrupt
    ├── ItemIndexError         the item index is missing, stale, or built by another model
    ├── LLMError               an LLM backend failed after its retries
    ├── StoreError             the session store cannot be read or written (its database is down or gone)
    └── ToolInputError         a tool/API call got arguments it cannot act on
"""

from __future__ import annotations

__all__ = [
    "LumenrecError",
    "ConfigError",
    "DataFormatError",
    "DataNotFoundError",
    "MissingExtraError",
    "CheckpointError",
    "ItemIndexError",
    "LLMError",
    "StoreError",
    "ToolInputError",
]


class LumenrecError(Exception):
    """Base class of every error lumenrec raises on purpose."""


class ConfigError(LumenrecError, ValueError):
    """A configuration field has a value it cannot take."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field, self.value, self.reason = field, value, reason
        super().__init__(f"config field {field!r}={value!r}: {reason}")


class DataFormatError(LumenrecError, ValueError):
    """An input record does not fit its format. Carries the place: path, 1-based line, field."""

    def __init__(self, path: str, line: int | None, reason: str, field: str | None = None) -> None:
        self.path, self.line, self.field, self.reason = str(path), line, field, reason
        where = f"{self.path}:{line}" if line is not None else self.path
        what = f" field {field!r}:" if field else ""
        super().__init__(f"{where}:{what} {reason}")


class DataNotFoundError(LumenrecError, FileNotFoundError):
    """A dataset directory or file that was asked for does not exist."""


class MissingExtraError(LumenrecError, ImportError):
    """An optional dependency is missing; the message says which extra installs it."""

    def __init__(self, module: str, extra: str, purpose: str = "") -> None:
        self.module, self.extra = module, extra
        why = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"the optional dependency {module!r} is not installed{why}; "
            f"fix it with: pip install 'lumenrec[{extra}]'"
        )


class CheckpointError(LumenrecError):
    """A checkpoint directory is missing a file, has a bad checksum, or does not fit the model."""


class ItemIndexError(LumenrecError):
    """The item index is missing, incomplete, or was built by a different model checkpoint."""


class LLMError(LumenrecError):
    """An LLM backend failed (timeout, refused, malformed output) after its bounded retries."""


class StoreError(LumenrecError):
    """The session store failed (database unreachable, file deleted, lock timeout); nothing was written."""


class ToolInputError(LumenrecError, ValueError):
    """A tool or API call got arguments it cannot act on; the message says what to send instead."""
