"""The pipeline flow run publishes the verdict where Prefect users look: the leaderboard as a
table artifact and the decisions as a markdown artifact, keyed, read back with the client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from pathlib import Path
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from flows.repro import DECISION_KEY, LEADERBOARD_KEY, publish_verdict

@flow(name="pipeline")
def pipeline():
    publish_verdict(Path.cwd())

for _ in range(2):  # two runs: the key keeps both
    pipeline()
with get_client(sync_client=True) as client:
    out = {}
    for key in (LEADERBOARD_KEY, DECISION_KEY):
        wanted = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        found = client.read_artifacts(artifact_filter=wanted)
        out[key] = [{"type": a.type, "data": a.data, "description": a.description} for a in found]
print(json.dumps(out, default=str))
"""


def test_the_verdict_is_a_table_and_a_markdown_artifact_kept_per_run(tmp_path: Path):
    from flows.server import prefect_api
    from tests.model.baseline_run import baseline_run

    (tmp_path / "reports").mkdir()
    report = baseline_run(tmp_path).reports["TEST"]  # the four rules, scored as evaluate does
    (tmp_path / "reports/metrics.json").write_text(json.dumps({"TEST": report.to_json()}))
    decision = {"model": "m", "version": 1, "variant": "last_close", "kind": "baseline"}
    decision.update(selection="best baseline", promote=True, reason="no champion yet")
    (tmp_path / "reports/registry.json").write_text(json.dumps({"TEST": decision}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env["PREFECT_HOME"] = str(tmp_path / ".prefect")
    os.environ["PREFECT_HOME"] = env["PREFECT_HOME"]
    try:
        with prefect_api(links=True) as url:
            done = subprocess.run(
                [sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                env={**env, "PREFECT_API_URL": url, "PYTHONPATH": str(ROOT)}, timeout=300,
            )  # fmt: skip
    finally:
        os.environ.pop("PREFECT_HOME", None)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    tables, notes = found["stockcast-leaderboard"], found["stockcast-decision"]
    assert len(tables) == 2 and len(notes) == 2
    assert all(t["type"] == "table" for t in tables)
    data = tables[0]["data"]
    rows = json.loads(data) if isinstance(data, str) else data
    assert {r["candidate"] for r in rows} == {"naive", "drift", "moving_average", "last_close"}
    (chosen,) = [r for r in rows if r["decision"]]
    assert chosen["candidate"] == "last_close" and chosen["decision"] == "champion (version 1)"
    assert tables[0]["description"] == "TEST: last_close is champion; no network scored on val"
    assert "**TEST**: v1 last_close (baseline) is @champion: no champion yet" in notes[0]["data"]
