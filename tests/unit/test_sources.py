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


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` requests, then the CSV; counts every request."""

    failures = 2
    hits: list[str] = []
    body = b""

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        if len(type(self).hits) <= type(self).failures:
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


class _Hanging(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        import time

        time.sleep(5)  # longer than the client's timeout

    def log_message(self, *args):
        pass


def _serve(handler: type) -> tuple[http.server.ThreadingHTTPServer, str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/MSFT_data.csv"


def test_a_503_then_a_200_is_retried_into_success():
    from stockcast.sources import fetch, forget_fetched

    _Flaky.body, _Flaky.hits = (FIXTURES / "MSFT_data.csv").read_bytes(), []
    httpd, url = _serve(_Flaky)
    try:
        assert fetch(url, timeout=5, retries=3) == _Flaky.body
        assert len(_Flaky.hits) == 3  # two 503s, then the file
        assert fetch(url, timeout=5, retries=3) == _Flaky.body  # the same run: no download
        assert len(_Flaky.hits) == 3
        forget_fetched()  # the next run downloads again
        _Flaky.hits = []
        with pytest.raises(DataError, match="after 1 retries: HTTP 503"):
            fetch(url, timeout=5, retries=1)
        assert len(_Flaky.hits) == 2  # the first try and one retry, no more
    finally:
        httpd.shutdown()


def test_a_server_that_hangs_hits_the_fetch_timeout():
    import time

    from stockcast.errors import FetchFailed
    from stockcast.sources import fetch

    httpd, url = _serve(_Hanging)
    started = time.monotonic()
    try:
        with pytest.raises(FetchFailed, match="timed out"):
            fetch(url, timeout=0.5, retries=0)
    finally:
        httpd.shutdown()
    assert time.monotonic() - started < 4  # the timeout, not the server's 5 s


def test_sources_are_shown_relative_to_the_project_and_urls_as_they_are(tmp_path):
    from stockcast.sources import shown

    inside = tmp_path / "data/raw/A.csv"
    origin = {"A": [str(inside), "http://127.0.0.1:8000/A.csv"], "B": ["/elsewhere/B.csv"]}
    assert shown(origin, tmp_path) == {
        "A": ["data/raw/A.csv", "http://127.0.0.1:8000/A.csv"],
        "B": ["/elsewhere/B.csv"],
    }


def _csv_server(body: dict) -> tuple[object, list[str]]:
    """Serves ``body["csv"]`` on loopback; the paths asked are kept."""
    import http.server
    import threading

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server spelling
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.end_headers()
            self.wfile.write(body["csv"].encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, asked


def test_a_urls_new_day_makes_the_pipeline_rerun_ingest_and_downloads_once(tmp_path):
    from flows.repro import url_news
    from stockcast.config import config_from_dict
    from stockcast.paths import Paths, write_parquet
    from stockcast.stages.ingest import read_sources
    from tests.conftest import synthetic_prices, write_yahoo_csv

    frame = synthetic_prices(30, "AAA")
    write_yahoo_csv(frame, tmp_path / "a.csv")
    body = {"csv": (tmp_path / "a.csv").read_text()}
    server, asked = _csv_server(body)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/AAA.csv"
        cfg = config_from_dict({"data": {"sources": [{"path": url, "ticker": "AAA"}]}})
        write_parquet(frame.iloc[:-1], Paths(tmp_path).ingested)  # the last ingest lacks a day
        assert url_news(tmp_path, cfg) == ["ingest"]
        read_sources(cfg, tmp_path)  # the ingest stage, in the same run
        assert asked == ["/AAA.csv"]  # downloaded once
        write_parquet(frame, Paths(tmp_path).ingested)
        assert url_news(tmp_path, cfg) == []  # a new run downloads again; nothing new
        assert asked == ["/AAA.csv", "/AAA.csv"]
    finally:
        server.shutdown()
    files = config_from_dict({"data": {"sources": ["a.csv"]}})
    assert url_news(tmp_path, files) == []  # no URL source: nothing fetched, DVC decides
