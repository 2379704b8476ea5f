"""Provider sources on recorded responses: the real yfinance and akshare parsing of what
Yahoo's chart API and East Money's kline API answer (the internet does not exist here, so
the HTTP layer under each library returns the recorded body)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import requests

from stockcast import providers
from stockcast.config import config_from_dict
from stockcast.errors import ConfigError, FetchFailed
from stockcast.stages.ingest import read_sources, refresh_providers
from tests.conftest import FIXTURES

RECORDED = FIXTURES / "providers"
TODAY = pd.Timestamp("2020-04-24")


@pytest.fixture
def east_money(monkeypatch):
    """East Money answers the recorded klines of 600519 (20 to 24 April 2020), dropping the
    days before the request's ``beg``, as the API does; the URLs asked are kept."""
    body = json.loads((RECORDED / "eastmoney_kline_600519.json").read_text(encoding="utf-8"))
    asked, answers = [], {"body": body, "fail": 0}

    def send(self, request, **kwargs):
        asked.append(request.url)
        if answers["fail"]:
            answers["fail"] -= 1
            raise requests.exceptions.ConnectionError("connection refused")
        beg = request.url.split("beg=")[1][:8]
        shown = json.loads(json.dumps(answers["body"]))
        shown["data"]["klines"] = [
            k for k in shown["data"]["klines"] if k[:10].replace("-", "") >= beg
        ]
        response = requests.Response()
        response.status_code, response.url, response.request = 200, request.url, request
        response._content = json.dumps(shown).encode()
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return asked, answers


def test_akshare_days_are_fetched_and_appended(tmp_path, east_money):
    asked, _ = east_money
    raw = tmp_path / "data/raw/600519.akshare.csv"
    first = providers.update(raw, "akshare", "600519", "2020-04-20", TODAY, backoff_seconds=0)
    assert first.added == 5 and first.newest == "2020-04-24" and first.revised == []
    assert "secid=1.600519" in asked[0] and "beg=20200420" in asked[0] and "fqt=0" in asked[0]
    frame = pd.read_csv(raw)
    assert list(frame.columns) == list(providers.COLUMNS)
    assert frame.iloc[-1].tolist() == ["2020-04-24", 1248.0, 1259.89, 1235.18, 1250.56, 19122]


def test_an_update_fetches_from_the_newest_stored_day_and_appends_only_new_ones(
    tmp_path, east_money
):
    asked, answers = east_money
    raw = tmp_path / "600519.csv"
    klines = answers["body"]["data"]["klines"]
    answers["body"]["data"]["klines"] = klines[:3]  # yesterday the provider had up to the 22nd
    providers.update(raw, "akshare", "600519", "2020-04-20", TODAY, backoff_seconds=0)
    before = raw.read_bytes()
    answers["body"]["data"]["klines"] = klines
    again = providers.update(raw, "akshare", "600519", "2020-04-20", TODAY, backoff_seconds=0)
    assert "beg=20200422" in asked[-1]  # only from the newest stored day on
    assert again.added == 2 and again.revised == []
    assert raw.read_bytes().startswith(before)  # stored rows never rewritten
    assert providers.update(raw, "akshare", "600519", "2020-04-20", TODAY).added == 0


def test_a_revised_past_row_is_reported_not_applied(tmp_path, east_money):
    _, answers = east_money
    raw = tmp_path / "600519.csv"
    providers.update(raw, "akshare", "600519", "2020-04-20", TODAY, backoff_seconds=0)
    before = raw.read_bytes()
    klines = answers["body"]["data"]["klines"]
    fields = klines[-1].split(",")
    fields[2] = "1251.00"  # the 24th's close, revised
    klines[-1] = ",".join(fields)
    done = providers.update(raw, "akshare", "600519", "2020-04-20", TODAY, backoff_seconds=0)
    assert done.added == 0
    assert done.revised == [
        "akshare:600519 2020-04-24: Close revised from 1250.56 to 1251.0 by the provider; "
        "the stored row is kept"
    ]
    assert raw.read_bytes() == before


def test_only_network_faults_are_retried(tmp_path, east_money):
    asked, answers = east_money
    answers["fail"] = 2
    done = providers.update(tmp_path / "a.csv", "akshare", "600519", "2020-04-20", TODAY,
                            retries=3, backoff_seconds=0)  # fmt: skip
    assert done.added == 5 and len(asked) == 3
    answers["fail"] = 5
    with pytest.raises(FetchFailed, match=r"akshare:600519.*no answer after 2 retries"):
        providers.update(tmp_path / "b.csv", "akshare", "600519", "2020-04-20", TODAY,
                         retries=2, backoff_seconds=0)  # fmt: skip
    assert not (tmp_path / "b.csv").exists()


def test_yfinance_parses_yahoos_chart_answer(tmp_path, monkeypatch):
    import yfinance
    from yfinance.data import YfData

    yfinance.set_tz_cache_location(str(tmp_path / "yf-tz"))
    body = json.loads((RECORDED / "yahoo_chart_MSFT.json").read_text(encoding="utf-8"))
    asked = []

    class Answer:
        status_code = 200

        def __init__(self, url):
            self.url, self.text = url, json.dumps(body)

        def json(self):
            return body

    def request(self, url, request_method=None, params=None, **kwargs):
        asked.append((url, params))
        return Answer(url)

    monkeypatch.setattr(YfData, "_make_request", request)
    raw = tmp_path / "MSFT.csv"
    done = providers.update(raw, "yfinance", "MSFT", "2013-04-01", pd.Timestamp("2013-04-08"))
    assert done.added == 5 and done.newest == "2013-04-08"
    url, params = asked[-1]
    assert url.endswith("/v8/finance/chart/MSFT") and params["interval"] == "1d"
    frame = pd.read_csv(raw)
    msft = pd.read_csv(FIXTURES / "MSFT_data.csv").tail(5)
    assert frame["Date"].tolist() == msft["date"].tolist()
    assert frame["Open"].tolist() == msft["open"].tolist()  # unadjusted prices
    assert frame["Close"].tolist() == pytest.approx(msft["close"].tolist())


def test_a_provider_source_feeds_ingest(tmp_path, east_money):
    cfg = config_from_dict(
        {
            "data": {
                "sources": [
                    {"path": "data/raw/SH600519.akshare.csv", "provider": "akshare",
                     "symbol": "600519", "ticker": "SH600519", "first_day": "2020-04-20"}
                ]
            }
        }
    )  # fmt: skip
    said, tracked = [], []
    refresh_providers(cfg, tmp_path, track=tracked.append, log=said.append, today=TODAY)
    assert said == ["akshare:600519: 5 new day(s) into data/raw/SH600519.akshare.csv, newest "
                    "2020-04-24"]  # fmt: skip
    assert tracked == [tmp_path / "data/raw/SH600519.akshare.csv"]
    frame = read_sources(cfg, tmp_path).frame
    assert set(frame["ticker"]) == {"SH600519"} and len(frame) == 5
    refresh_providers(cfg, tmp_path, track=tracked.append, log=said.append, today=TODAY)
    assert len(tracked) == 1  # nothing new: nothing to record


@pytest.mark.parametrize(
    "source",
    [
        {"path": "https://x/a.csv", "provider": "akshare", "symbol": "600519"},
        {"path": "data/raw/*.csv", "provider": "yfinance", "symbol": "MSFT"},
        {"path": "data/raw/a.csv", "provider": "bloomberg", "symbol": "MSFT"},
    ],
)
def test_a_provider_source_is_a_raw_csv_of_a_known_provider(source):
    with pytest.raises(ConfigError, match=r"provider|source is the raw CSV"):
        config_from_dict({"data": {"sources": [source]}})


def test_a_providers_new_day_makes_dvc_status_name_ingest(tmp_path, east_money):
    """On real DVC: the raw file a provider appends to is dvc add-ed inside data/raw, the
    ingest stage's dependency, so the next dvc status names ingest."""
    import subprocess
    import sys

    from flows.repro import fetch_providers

    dvc = str(Path(sys.executable).parent / "dvc")

    def sh(*cmd: str) -> str:
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    _, answers = east_money
    sh("git", "init", "-q")
    sh(dvc, "init", "-q")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  ingest:\n    cmd: echo ingested > ingested.txt\n    deps:\n    - data/raw\n"
        "    outs:\n    - ingested.txt\n"
    )
    cfg = config_from_dict(
        {"data": {"sources": [{"path": "data/raw/SH600519.akshare.csv", "provider": "akshare",
                               "symbol": "600519", "first_day": "2020-04-20"}]}}
    )  # fmt: skip
    klines = answers["body"]["data"]["klines"]
    answers["body"]["data"]["klines"] = klines[:4]
    fetch_providers(tmp_path, cfg)
    assert (tmp_path / "data/raw/SH600519.akshare.csv.dvc").exists()  # DVC tracks it
    sh(dvc, "repro", "-q")
    assert "ingest" not in sh(dvc, "status")
    answers["body"]["data"]["klines"] = klines  # the next day
    fetch_providers(tmp_path, cfg)
    assert "ingest" in sh(dvc, "status")
