"""Sources: a file, a folder, a glob, or an http(s) URL (served locally; no internet)."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from stockcast.config import Source
from stockcast.errors import DataError
from stockcast.ingest import combine
from stockcast.sources import expand, load
from tests.conftest import FIXTURES


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("MSFT_data.csv", "SH600519.csv"):
        (tmp_path / name).write_bytes((FIXTURES / name).read_bytes())
    (tmp_path / "notes.txt").write_text("not a csv")
    return tmp_path


def test_folder_and_glob_expand_in_a_stable_order(folder: Path):
    assert [p.name for p in expand(str(folder), Path("/"))] == ["MSFT_data.csv", "SH600519.csv"]
    assert [p.name for p in expand("MSFT*.csv", folder)] == ["MSFT_data.csv"]
    results = load(Source(path=str(folder)), Path("/"))
    assert sorted(combine(results).frame["ticker"].unique()) == ["MSFT", "SH600519"]


def test_empty_folder_and_unmatched_glob(tmp_path: Path):
    with pytest.raises(DataError, match="folder holds no .csv file"):
        expand(str(tmp_path), Path("/"))
    with pytest.raises(DataError, match="the pattern matches no file"):
        expand("*.csv", tmp_path)


@pytest.fixture
def server(folder: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_url_source_is_fetched_and_named_by_its_file(server: str):
    (result,) = load(Source(path=f"{server}/MSFT_data.csv"), Path("/"))
    assert result.frame["ticker"].unique().tolist() == ["MSFT"] and len(result.frame) == 40
    (named,) = load(Source(path=f"{server}/SH600519.csv", ticker="MOUTAI"), Path("/"))
    assert named.frame["ticker"].unique().tolist() == ["MOUTAI"]


def test_url_errors_are_reported_not_raised_raw(server: str):
    with pytest.raises(DataError, match="download failed: HTTP 404"):
        load(Source(path=f"{server}/missing.csv"), Path("/"), retries=0)
    with pytest.raises(DataError, match="download failed after 1 retries"):
        load(Source(path="http://127.0.0.1:9/prices.csv"), Path("/"), timeout=1, retries=1)
