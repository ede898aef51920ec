"""``lumenrec data download``: fetch the public dataset files into the cache, resumably and atomically.

Default sources (public, no login):

- Amazon Reviews **2014** (McAuley et al.), 5-core reviews + metadata per category, under
  ``https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/``:
  ``reviews_<Cat>_5.json.gz`` and ``meta_<Cat>.json.gz``.
- Amazon Reviews **2018** (Ni et al.), under ``https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/``:
  ``categoryFilesSmall/<Cat>_5.json.gz`` and ``metaFiles2/meta_<Cat>.json.gz``.
- **REGEN** is published on Kaggle as ``googleai/regen-reviews-enhanced-with-generative-narratives``,
  which needs a Kaggle account/token, so it has no default URL here: download it yourself (e.g.
  ``kaggle datasets download googleai/regen-reviews-enhanced-with-generative-narratives``) and pass
  ``--file archive.zip`` (or a ``.jsonl``), or pass ``--url`` to any mirror you can reach.

Names: ``office-2014``, ``beauty-2014``, ``grocery-2014`` (2014 Office_Products / Beauty /
Grocery_and_Gourmet_Food), ``office-2018`` (2018 Office_Products), ``amazon-2014:<Cat>``,
``amazon-2018:<Cat>`` (any category file name), and ``regen``. Files land in
``<cache>/data/<dataset dir>`` (``<cache>`` = ``$LUMENREC_CACHE_DIR`` or ``~/.cache/lumenrec``),
where :func:`lumenrec.data.registry.load_dataset` finds them by name; a named dataset that also
exists in ``../shared/data`` (preprocessed) is found there first, so load the download by path.

Every file is written to ``<file>.part`` and moved into place with :func:`os.replace` only once
complete and checked (size from the server's Content-Length and, when known, the expected size
and SHA-256; gzip magic for ``.gz``). An interrupted download resumes from the ``.part`` with an
HTTP Range request. ``--base-url`` (or ``$LUMENREC_DOWNLOAD_BASE``) replaces every default base
URL, keeping the relative file paths above, e.g. for a mirror or a local test server.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from lumenrec.data.io import sha256_file
from lumenrec.errors import ConfigError, DataNotFoundError, LumenrecError

__all__ = ["DownloadError", "RemoteFile", "DownloadSpec", "resolve", "download_file", "download",
           "BASE_2014", "BASE_2018", "KAGGLE_REGEN"]

log = logging.getLogger(__name__)

BASE_2014 = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
BASE_2018 = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"
KAGGLE_REGEN = "https://www.kaggle.com/datasets/googleai/regen-reviews-enhanced-with-generative-narratives"
ENV_BASE = "LUMENREC_DOWNLOAD_BASE"
_USER_AGENT = "lumenrec-data-download/0.1 (+python urllib)"

# short name -> (release, category file name, dataset directory under <cache>/data)
_NAMED = {
    "office-2014": ("2014", "Office_Products", "amazon-office-2014"),
    "beauty-2014": ("2014", "Beauty", "amazon-beauty-2014"),
    "grocery-2014": ("2014", "Grocery_and_Gourmet_Food", "amazon-grocery-2014"),
    "office-2018": ("2018", "Office_Products", "amazon-office-2018"),
}


class DownloadError(LumenrecError, OSError):
    """A download failed (HTTP error, unreachable host, size or checksum mismatch)."""


@dataclass
class RemoteFile:
    """One file: its path relative to a base URL, the default base, and what it should be."""

    rel: str
    default_base: str
    size: int | None = None  # bytes, when known: checked after download
    sha256: str | None = None  # hex digest, when known

    @property
    def filename(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    def url(self, base_url: str | None = None) -> str:
        return (base_url or self.default_base).rstrip("/") + "/" + self.rel


@dataclass
class DownloadSpec:
    """What `lumenrec data download NAME` fetches and where it goes."""

    name: str
    subdir: str
    files: list[RemoteFile] = field(default_factory=list)
    note: str = ""


def _amazon_files(release: str, cat: str) -> list[RemoteFile]:
    if not cat or "/" in cat or cat.startswith("."):
        raise ConfigError("name", cat, "category must be a file-name part like 'Office_Products'")
    if release == "2014":
        return [RemoteFile(f"reviews_{cat}_5.json.gz", BASE_2014), RemoteFile(f"meta_{cat}.json.gz", BASE_2014)]
    return [RemoteFile(f"categoryFilesSmall/{cat}_5.json.gz", BASE_2018),
            RemoteFile(f"metaFiles2/meta_{cat}.json.gz", BASE_2018)]


def resolve(name: str) -> DownloadSpec:
    """The DownloadSpec of a dataset name (see the module docstring)."""
    if name in _NAMED:
        release, cat, sub = _NAMED[name]
        return DownloadSpec(name, sub, _amazon_files(release, cat))
    for release in ("2014", "2018"):
        prefix = f"amazon-{release}:"
        if name.startswith(prefix):
            cat = name[len(prefix):]
            return DownloadSpec(name, f"amazon-{release}-{cat.lower().replace('_', '-')}", _amazon_files(release, cat))
    if name == "regen":
        return DownloadSpec(name, "regen", [], note=(
            f"REGEN is on Kaggle ({KAGGLE_REGEN}) and needs a Kaggle token: download it with "
            "`kaggle datasets download googleai/regen-reviews-enhanced-with-generative-narratives` "
            "and pass --file <zip or jsonl>, or pass --url <mirror URL>"))
    known = ", ".join([*_NAMED, "amazon-2014:<Category>", "amazon-2018:<Category>", "regen"])
    raise ConfigError("name", name, f"unknown dataset to download; known: {known}")


def _http_error(url: str, e: Exception) -> DownloadError:
    hint = " (use --base-url / $LUMENREC_DOWNLOAD_BASE for a mirror, or --url / --file)"
    if isinstance(e, urllib.error.HTTPError):
        return DownloadError(f"HTTP {e.code} {e.reason} for {url}{hint}")
    reason = getattr(e, "reason", e)
    return DownloadError(f"cannot reach {url}: {reason}{hint}")



def download_file(url: str, dest: str | Path, *, size: int | None = None, sha256: str | None = None,
                  progress: bool = True, timeout: float = 60.0, force: bool = False,
                  chunk_size: int = 1 << 20) -> Path:
    """Download `url` to `dest` via ``dest.part`` (resumed if present), check it, then os.replace.

    An existing `dest` is kept (no request) unless `force`. Raises DownloadError on HTTP/network
    failure (the message has the status and URL), on a short read (the ``.part`` is kept so a rerun
    resumes), and on a size/checksum/gzip mismatch (the ``.part`` is removed).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    if dest.exists() and not force:
        log.info("%s already present; skipping (use force=True to fetch again)", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() and not force else 0
    if force and part.exists():
        part.unlink()

    def request(start: int) -> urllib.request.Request:
        headers = {"User-Agent": _USER_AGENT}
        if start:
            headers["Range"] = f"bytes={start}-"
        return urllib.request.Request(url, headers=headers)

    try:
        try:
            resp = urllib.request.urlopen(request(offset), timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # our .part is not a prefix the server can continue: restart
                log.warning("%s: server refused to resume at byte %d; starting over", url, offset)
                offset = 0
                resp = urllib.request.urlopen(request(0), timeout=timeout)
            else:
                raise
    except (urllib.error.URLError, OSError) as e:
        raise _http_error(url, e) from e

    with resp:
        status = getattr(resp, "status", 200)
        if offset and status != 206:
            log.info("%s: server does not support resuming; downloading from the start", url)
            offset = 0
        length = resp.headers.get("Content-Length")
        expected = offset + int(length) if length is not None else None
        mode = "ab" if offset else "wb"
        got = offset
        try:
            with open(part, mode) as out, tqdm(total=expected, initial=offset, unit="B", unit_scale=True,
                                               desc=dest.name, disable=not progress, leave=False) as bar:
                while True:
                    block = resp.read(chunk_size)
                    if not block:
                        break
                    out.write(block)
                    got += len(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as e:  # connection dropped mid-way: keep the .part
            raise DownloadError(f"download of {url} interrupted at {got} bytes ({e}); rerun to resume") from e

    if expected is not None and got != expected:
        raise DownloadError(f"download of {url} incomplete: {got} of {expected} bytes; rerun to resume")
    if size is not None and got != size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: got {got} bytes, expected {size}; the file was removed")
    if sha256 is not None and sha256_file(part) != sha256.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: SHA-256 mismatch (expected {sha256}); the file was removed")
    if dest.name.endswith(".gz"):
        with open(part, "rb") as f:
            magic = f.read(2)
        if magic != b"\x1f\x8b":
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: not a gzip file (an error page?); the file was removed")
    os.replace(part, dest)
    log.info("downloaded %s -> %s (%d bytes)", url, dest, got)
    return dest


def _copy_atomic(src: Path, dest: Path) -> Path:
    part = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, part)
    os.replace(part, dest)
    return dest


def _extract_zip(archive: Path, dest_dir: Path) -> list[Path]:
    """Extract the data members (.jsonl/.json/.gz) of a zip, refusing paths that leave `dest_dir`."""
    out = []
    root = dest_dir.resolve()
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            if info.is_dir() or not info.filename.endswith((".jsonl", ".json", ".gz", ".md")):
                continue
            target = (dest_dir / info.filename).resolve()
            if root not in target.parents:
                raise DownloadError(f"{archive}: member {info.filename!r} would be written outside {dest_dir}")
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            with z.open(info) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(part, target)
            out.append(target)
    return out


def download(name: str, dest: str | Path | None = None, *, base_url: str | None = None, url: str | None = None,
             file: str | Path | None = None, force: bool = False, progress: bool = True,
             timeout: float = 60.0) -> list[Path]:
    """Fetch the files of dataset `name` into `dest` (default ``<cache>/data/<dataset dir>``).

    `url` fetches that one URL instead of the defaults and `file` copies a local file (a ``.zip``
    is extracted); either is required for ``regen``. Returns the paths written (or already there).
    """
    from lumenrec.data.registry import cache_dir

    spec = resolve(name)
    dest_dir = Path(dest) if dest is not None else cache_dir() / "data" / spec.subdir
    dest_dir.mkdir(parents=True, exist_ok=True)
    if file is not None:
        src = Path(file)
        if not src.is_file():
            raise DataNotFoundError(f"{src}: no such file to import")
        if src.suffix == ".zip":
            return _extract_zip(src, dest_dir)
        return [_copy_atomic(src, dest_dir / src.name)]
    if url is not None:
        fname = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "download"
        got = download_file(url, dest_dir / fname, progress=progress, timeout=timeout, force=force)
        return _extract_zip(got, dest_dir) if got.suffix == ".zip" else [got]
    if not spec.files:
        raise ConfigError("name", name, spec.note or "no default files; pass --url or --file")
    base = base_url or os.environ.get(ENV_BASE) or None
    return [download_file(f.url(base), dest_dir / f.filename, size=f.size, sha256=f.sha256,
                          progress=progress, timeout=timeout, force=force) for f in spec.files]
