"""`lumenrec data download` against a real HTTP server on 127.0.0.1 serving small gz files the test writes."""

from __future__ import annotations

import gzip
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lumenrec.data.download import DownloadError, download, download_file, resolve
from lumenrec.data.registry import load_dataset
from lumenrec.errors import ConfigError

pytestmark = pytest.mark.integration


def gz_lines(lines: list[str]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write("".join(line + "\n" for line in lines).encode())
    return buf.getvalue()


def amazon_files(cat: str) -> tuple[bytes, bytes]:
    reviews = [json.dumps({"reviewerID": f"U{u}", "asin": f"I{i}", "overall": 4.0, "reviewText": "ok",
                           "unixReviewTime": 100 * u + i}) for u in range(5) for i in range(5)]
    meta = [repr({"asin": f"I{i}", "title": f"{cat} item {i}", "categories": [[cat]]}) for i in range(5)]
    return gz_lines(reviews), gz_lines(meta)


class Server:
    """Serves `files` (path -> bytes) with Range support; `truncate` paths send half once, then break."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output quiet
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(body):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if self.path in outer.truncate:
                    outer.truncate.discard(self.path)
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with Server() as s:
        yield s


def test_download_2014_then_load(server, tmp_path):
    rev, meta = amazon_files("Toys")
    server.files["/base/reviews_Toys_5.json.gz"] = rev
    server.files["/base/meta_Toys.json.gz"] = meta
    paths = download("amazon-2014:Toys", tmp_path / "toys", base_url=server.url + "/base", progress=False)
    assert [p.name for p in paths] == ["reviews_Toys_5.json.gz", "meta_Toys.json.gz"]
    assert paths[0].read_bytes() == rev and not list((tmp_path / "toys").glob("*.part"))
    ds = load_dataset(str(tmp_path / "toys"))
    assert ds.summary()["users"] == 5 and ds.catalog.get("I3").title == "Toys item 3"
    # already there: no new request
    n = len(server.requests)
    download("amazon-2014:Toys", tmp_path / "toys", base_url=server.url + "/base", progress=False)
    assert len(server.requests) == n


def test_download_2018_layout_and_env_base(server, tmp_path, monkeypatch):
    rev, meta = amazon_files("Office")
    server.files["/m/categoryFilesSmall/Office_Products_5.json.gz"] = rev
    server.files["/m/metaFiles2/meta_Office_Products.json.gz"] = meta
    monkeypatch.setenv("LUMENREC_DOWNLOAD_BASE", server.url + "/m")
    monkeypatch.setenv("LUMENREC_CACHE_DIR", str(tmp_path / "cache"))
    paths = download("office-2018", progress=False)
    assert paths[0] == tmp_path / "cache" / "data" / "amazon-office-2018" / "Office_Products_5.json.gz"
    ds = load_dataset(str(paths[0].parent))
    assert ds.info["format"] == "amazon-2018" and ds.summary()["interactions"] == 25


def test_http_404_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError) as ei:
        download("amazon-2014:Nope", tmp_path, base_url=server.url, progress=False)
    msg = str(ei.value)
    assert "HTTP 404" in msg and f"{server.url}/reviews_Nope_5.json.gz" in msg and "--base-url" in msg
    assert not (tmp_path / "reviews_Nope_5.json.gz").exists()


def test_unreachable_host_is_a_clear_error(tmp_path):
    with Server() as s:  # take a free port, then close it
        url = s.url
    with pytest.raises(DownloadError, match="cannot reach"):
        download_file(url + "/x.gz", tmp_path / "x.gz", progress=False, timeout=5)


def test_resume_from_part_file(server, tmp_path):
    body = gz_lines([f"line {i}" for i in range(2000)])
    server.files["/f.json.gz"] = body
    dest = tmp_path / "f.json.gz"
    (tmp_path / "f.json.gz.part").write_bytes(body[:1000])
    download_file(server.url + "/f.json.gz", dest, progress=False)
    assert server.requests == [("/f.json.gz", "bytes=1000-")]
    assert dest.read_bytes() == body and not (tmp_path / "f.json.gz.part").exists()


def test_interrupted_download_keeps_part_and_resumes(server, tmp_path):
    body = gz_lines([f"row {i}" for i in range(5000)])
    server.files["/big.json.gz"] = body
    server.truncate.add("/big.json.gz")
    dest = tmp_path / "big.json.gz"
    with pytest.raises(DownloadError, match="rerun to resume"):
        download_file(server.url + "/big.json.gz", dest, progress=False)
    part = tmp_path / "big.json.gz.part"
    assert not dest.exists() and 0 < part.stat().st_size < len(body)
    half = part.stat().st_size
    download_file(server.url + "/big.json.gz", dest, progress=False)
    assert server.requests[-1] == ("/big.json.gz", f"bytes={half}-")
    assert dest.read_bytes() == body


def test_size_checksum_and_gzip_checks(server, tmp_path):
    server.files["/a.json.gz"] = gz_lines(["x"])
    server.files["/page.json.gz"] = b"<html>error</html>"
    with pytest.raises(DownloadError, match="expected 3"):
        download_file(server.url + "/a.json.gz", tmp_path / "a.json.gz", size=3, progress=False)
    with pytest.raises(DownloadError, match="SHA-256"):
        download_file(server.url + "/a.json.gz", tmp_path / "a.json.gz", sha256="00" * 32, progress=False)
    with pytest.raises(DownloadError, match="not a gzip"):
        download_file(server.url + "/page.json.gz", tmp_path / "page.json.gz", progress=False)
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_regen_needs_url_or_file_and_imports_a_zip(server, tmp_path):
    with pytest.raises(ConfigError, match="Kaggle"):
        download("regen", tmp_path / "r")
    rec = {"reviewer_id": "U1", "purchase_history": [
        {"item": {"asin": "A", "title": "Pen"}, "review": {"rating": 5, "text": "ok", "unix_time": 1}},
        {"item": {"asin": "B", "title": "Ink"}, "review": {"rating": 4, "text": "ok", "unix_time": 2}}]}
    archive = tmp_path / "regen.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("regen/REGEN/office.jsonl", json.dumps(rec) + "\n")
        z.writestr("../evil.jsonl", "x")  # must be refused, not written outside
    with pytest.raises(DownloadError, match="outside"):
        download("regen", tmp_path / "r", file=archive)
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("regen/REGEN/office.jsonl", json.dumps(rec) + "\n")
    paths = download("regen", tmp_path / "r2", file=archive)
    assert [p.name for p in paths] == ["office.jsonl"]
    assert load_dataset(str(tmp_path / "r2")).conversations[0].target == "B"
    # --url for a mirror
    server.files["/mirror/office.jsonl"] = (json.dumps(rec) + "\n").encode()
    got = download("regen", tmp_path / "r3", url=server.url + "/mirror/office.jsonl", progress=False)
    assert load_dataset(str(got[0])).summary()["interactions"] == 2


def test_cli_download(server, tmp_path, capsys):
    from lumenrec.cli import main

    rev, meta = amazon_files("Toys")
    server.files["/reviews_Toys_5.json.gz"] = rev
    server.files["/meta_Toys.json.gz"] = meta
    rc = main(["data", "download", "amazon-2014:Toys", "--dest", str(tmp_path), "--base-url", server.url, "--no-progress"])
    assert rc == 0 and (tmp_path / "meta_Toys.json.gz").read_bytes() == meta
    assert str(tmp_path / "reviews_Toys_5.json.gz") in capsys.readouterr().out
    rc = main(["data", "download", "amazon-2014:Gone", "--dest", str(tmp_path), "--base-url", server.url, "--no-progress"])
    assert rc == 1 and "HTTP 404" in capsys.readouterr().err


def test_resolve_names():
    assert [f.url() for f in resolve("office-2014").files] == [
        "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Office_Products_5.json.gz",
        "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/meta_Office_Products.json.gz"]
    assert resolve("office-2018").files[1].url() == (
        "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/metaFiles2/meta_Office_Products.json.gz")
    with pytest.raises(ConfigError, match="unknown dataset"):
        resolve("movielens")
