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


EXPERIMENT = """
import json, os, subprocess, sys
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.runtime import flow_run
from flows.stages import PIPELINE_RUN

STAGE = '''
import os, sys
from prefect import flow
from flows.stages import PIPELINE_RUN
from flows.stages.__main__ import run_as_subflow
from stockcast.errors import StockcastError

@flow(name=sys.argv[1])
def stage(params: str) -> str:
    if sys.argv[1] == "bad":
        raise StockcastError("the bad stage stopped")
    return params

try:
    print("RESULT", run_as_subflow(stage, os.environ[PIPELINE_RUN], {"params": "p.yaml"}))
except StockcastError as exc:
    print("STOPPED", exc)
'''

@flow(name="pipeline")
def pipeline():
    env = {**os.environ, PIPELINE_RUN: str(flow_run.id)}
    outs = [
        subprocess.run([sys.executable, "-c", STAGE, name], env=env, capture_output=True,
                       text=True, check=True).stdout
        for name in ("window", "bad")
    ]
    return str(flow_run.id), outs

parent, outs = pipeline()
with get_client(sync_client=True) as client:
    children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])))
    found = [(client.read_flow(c.flow_id).name, c.state.type.value, c.tags) for c in children]
    top = client.read_flow_runs()
print(json.dumps({"outs": outs, "children": sorted(found),
                  "top": len([r for r in top if r.parent_task_run_id is None])}))
"""


def test_a_stage_run_by_another_process_is_a_subflow_of_the_pipeline_run(tmp_path: Path):
    """A DVC experiment's stages run one process each (``dvc exp run``); each stage's flow
    run is a subflow of the pipeline flow run, not a loose top-level run, and a stage that
    stops raises as a direct call does."""
    from flows.server import prefect_api

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env["PREFECT_HOME"] = str(tmp_path / ".prefect")
    os.environ["PREFECT_HOME"] = env["PREFECT_HOME"]
    try:
        with prefect_api() as url:
            done = subprocess.run(
                [sys.executable, "-c", EXPERIMENT], cwd=tmp_path, capture_output=True,
                text=True, env={**env, "PREFECT_API_URL": url, "PYTHONPATH": str(ROOT)},
                timeout=300,
            )  # fmt: skip
    finally:
        os.environ.pop("PREFECT_HOME", None)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "RESULT p.yaml" in found["outs"][0]
    assert "STOPPED the bad stage stopped" in found["outs"][1]
    assert [c[:2] for c in found["children"]] == [["bad", "FAILED"], ["window", "COMPLETED"]]
    assert found["top"] == 1  # the pipeline run alone is top-level
