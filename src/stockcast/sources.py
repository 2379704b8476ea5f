"""Where prices come from: a file, a folder, a glob, or an http(s) URL."""

from __future__ import annotations

import glob
from pathlib import Path

from stockcast.config import Source
from stockcast.errors import DataError, FetchFailed
from stockcast.ingest import IngestResult, mapped_layout, read_prices


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def expand(spec: str, root: Path) -> list[Path | str]:
    """The files (or the URL) one source names, in a stable order.

    Raises:
        DataError: a folder without CSV files, a glob matching nothing, a missing file.
    """
    if is_url(spec):
        return [spec]
    path = Path(spec) if Path(spec).is_absolute() else root / spec
    if glob.has_magic(str(path)):
        found = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        if not found:
            raise DataError(spec, "the pattern matches no file", expected="at least one CSV")
        return list(found)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
        if not found:
            raise DataError(path, "folder holds no .csv file", expected="daily price CSVs")
        return list(found)
    if not path.exists():
        raise DataError(path, "file not found")
    return [path]


_FETCHED: dict[str, bytes] = {}  # this run's downloads: a URL is fetched once per run


def forget_fetched() -> None:
    """Start a run afresh: the next read of a URL source downloads it again."""
    _FETCHED.clear()


def fetch(url: str, timeout: float = 30.0, retries: int = 3) -> bytes:
    """Download ``url`` (once per run: :func:`forget_fetched`); only this network step is
    retried (with back-off), never parsing.

    Raises:
        DataError: the server keeps failing or answers with an error status.
    """
    if url in _FETCHED:
        return _FETCHED[url]
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=retries,
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET",),
        raise_on_status=False,
    )
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        try:
            response = session.get(url, timeout=timeout)
        except requests.RequestException as exc:
            raise FetchFailed(url, f"download failed after {retries} retries: {exc}") from exc
    if response.status_code in (429, 500, 502, 503, 504):
        raise FetchFailed(
            url,
            f"download failed after {retries} retries: HTTP {response.status_code}",
            expected="HTTP 200 with a CSV body",
        )
    if response.status_code != 200:
        raise DataError(
            url,
            f"download failed: HTTP {response.status_code}",
            expected="HTTP 200 with a CSV body",
        )
    _FETCHED[url] = response.content
    return response.content


def load(
    source: Source, root: Path, date_order: str = "auto", timeout: float = 30.0, retries: int = 3
) -> list[IngestResult]:
    """Read every file of one source into canonical tables."""
    layout = mapped_layout(source.columns, source.date_format) if source.columns else None
    results = []
    for location in expand(source.path, root):
        content = fetch(str(location), timeout, retries) if isinstance(location, str) else None
        results.append(
            read_prices(
                location, source.ticker, layout=layout, date_order=date_order, content=content
            )
        )
    return results


def shown(origin: dict[str, list[str]], root: Path) -> dict[str, list[str]]:
    """Each ticker's source files as a person reads them: relative to ``root`` when inside it,
    URLs as they are."""

    def one(location: str) -> str:
        if is_url(location):  # a path's resolve() would fold its "//" into one slash
            return location
        try:
            return str(Path(location).resolve().relative_to(root.resolve()))
        except ValueError:
            return location

    return {ticker: [one(f) for f in files] for ticker, files in origin.items()}
