"""The daily ``retrain`` flow, served on a cron schedule by ``make schedule``.

    python -m flows.retrain serve        # register the scheduled deployment and serve it
    python -m flows.retrain run [--force]  # one run now, in this process

Each run: take the project's run lock (one run at a time) → read every configured source
→ no new trading day: finish early and say so → the DVC stages up to drift →
with ``drift.on_drift: retrain`` and no drift, stop there (data refreshed, models kept) →
the rest of the chain → ``dvc push`` when a remote is configured → a markdown artifact with
each ticker's metrics, baselines, promotion decision and drift. The stages are the same DVC
stages ``make pipeline`` runs, so both leave the same ``dvc.lock``. The train stage runs in a
process started before all that (:class:`flows.plan.StageAhead`), which imports TensorFlow and
traces the networks meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, tags, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Cancelled

import flows.env  # noqa: F401  (telemetry off before the libraries load)
from flows.orphans import mark_orphans, project_tag
from flows.plan import StageAhead, run_stages, started_ahead, take_ahead
from flows.server import BIN, prefect_api, venv_env
from flows.stages import untagged
from stockcast import ops
from stockcast.config import Config, load_config
from stockcast.continuation import COLD_ENV
from stockcast.errors import (
    DataError,
    DvcFailed,
    FetchFailed,
    RunLocked,
    StockcastError,
    TransientIOError,
)
from stockcast.lineage import mark_pipeline_started
from stockcast.paths import Paths
from stockcast.stages import forecast
from stockcast.stages.ingest import read_sources

ROOT = Path.cwd()
RETRY_DELAYS = [10, 60, 300]  # seconds: back-off for network and store I/O


def io_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry on network and store I/O errors only, never on bad data or bugs."""
    try:
        state.result()
    except FetchFailed:  # a source that did not answer: the network, not the data
        return True
    except DataError:
        return False
    except (OSError, TimeoutError, ConnectionError):
        return True
    except Exception:  # noqa: BLE001 - anything else is not transient
        return False
    return False


@task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=io_only)
def check_sources(cfg: Config, paths: Paths) -> ops.NewData:
    """Fetch every source (URLs retried with back-off; a provider's new days appended to its
    raw file) and compare with the last ingest."""
    from flows.repro import fetch_providers
    from stockcast.sources import forget_fetched

    forget_fetched()  # a served process runs many runs: each downloads afresh, once
    fetch_providers(paths.root, cfg)
    frame = read_sources(cfg, paths.root).frame
    return ops.new_data(frame, paths.ingested)


def run_dvc(*args: str) -> str:
    """Run ``dvc`` in the project with this run's Prefect API; the output goes to the log."""
    proc = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=ROOT, env=venv_env(), capture_output=True, text=True
    )
    output = (proc.stdout + proc.stderr)[-20000:]
    logger = get_run_logger()
    (logger.info if proc.returncode == 0 else logger.error)("dvc %s:\n%s", " ".join(args), output)
    if proc.returncode != 0:
        raise DvcFailed(f"dvc {' '.join(args)} failed (exit {proc.returncode}):\n{output[-3000:]}")
    return output


@task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=io_only)
def push() -> None:
    """``dvc push`` data and artifacts to the configured remote."""
    try:
        run_dvc("push")
    except DvcFailed as exc:
        raise TransientIOError(str(exc)) from exc


def report_failure(flow: Any, run: Any, state: Any) -> None:
    """Failure hook: log why, and POST it to ``schedule.webhook`` when params give one."""
    logger = get_run_logger()
    reason = state.message or state.name
    logger.error("retrain run %s %s: %s", run.name, state.name, reason)
    try:
        schedule = load_config(ROOT / run.parameters.get("params", "params.yaml")).schedule
    except StockcastError:
        schedule = None
    url = schedule.webhook if schedule else None
    try:
        sent = ops.notify(
            schedule.notify if schedule else "STOCKCAST_NOTIFY_URL",
            f"stockcast: {flow.name} run {run.name} {state.name}",
            f"{flow.name} run {run.name} ({run.id}) in {ROOT}: {state.name}: {reason}",
        )
        if sent:
            logger.info("failure notice sent to %d Apprise URL(s)", sent)
    except Exception as exc:  # noqa: BLE001 - the notice must never hide the failure
        logger.error("could not send the failure notice: %s", exc)
    if url:
        payload = {
            "flow": flow.name,
            "flow_run_id": str(run.id),
            "flow_run_name": run.name,
            "state": state.name,
            "message": reason,
            "project": str(ROOT),
        }
        try:
            status = ops.post_webhook(url, payload)
            logger.info("failure posted to the webhook (HTTP %s)", status)
        except Exception as exc:  # noqa: BLE001 - the hook must never hide the failure
            logger.error("could not post to the webhook %s: %s", url, exc)


class Publishing:
    """The ledger's live skill logged to MLflow and charted while the networks fit (off the
    day's critical path, done before evaluate and register write the store); its failure is
    a warning after the stages, never the run's. It publishes what ``day`` saw."""

    def __init__(self, cfg: Config, paths: Paths, day: Day) -> None:
        self.cfg, self.paths, self.day = cfg, paths, day
        self.error: BaseException | None = None
        self.done = False

    def __call__(self) -> None:
        if self.day.seen is None:  # the run never reached the ledger: nothing to publish
            self.done = True
            return
        try:
            forecast.publish(self.cfg, self.paths, self.day.seen)
        except Exception as exc:  # noqa: BLE001 - reported by report()
            self.error = exc
        self.done = True

    def report(self) -> None:
        if self.error is not None:
            get_run_logger().warning("live skill was not logged to MLflow: %s", self.error)


def _artifact(markdown: str, key: str = "retrain-summary") -> None:
    """The run's summary. A run with nothing to do writes ``retrain-check``, so the latest
    ``retrain-summary`` is always the last run that did something."""
    create_markdown_artifact(markdown=markdown, key=key, description="stockcast daily retrain")


@task
def monitor(cfg: Config, paths: Paths, publish: bool = True) -> forecast.Monitoring:
    """Score the open forecasts from the validated table, read decay, and (``publish``) log
    live skill to MLflow and chart it; without, :class:`Publishing` does that later."""
    logger = get_run_logger()
    seen = (forecast.monitor if publish else forecast.read_ledger)(cfg, paths)
    logger.info("ledger: %d forecast day(s) scored", seen.recorded.added)
    for revision in seen.recorded.revisions:
        logger.warning(revision)
    for reading in seen.decays:
        (logger.warning if reading.decayed else logger.info)(reading.message(cfg.monitor))
    return seen


@task
def forecast_next(cfg: Config, paths: Paths) -> forecast.Forecasts:
    """Every ticker's next trading day from its @champion, into the forecast ledger."""
    made = forecast.forecast_all(cfg, paths)
    get_run_logger().info(
        "ledger: %d forecast(s) recorded, %d already there; no @champion: %s",
        made.appended.added,
        made.appended.kept,
        ", ".join(made.missing) or "none",
    )
    return made


@flow(name="retrain", on_failure=[report_failure], on_crashed=[report_failure])
def retrain(params: str = "params.yaml", force: bool = False) -> dict[str, Any]:
    """One daily retraining run (see the module docstring).

    Args:
        params: the parameters file, relative to the project root.
        force: run the chain even when no source has a new trading day (and, with
            ``drift.on_drift: retrain``, even without drift).
    """
    mark_pipeline_started()  # a served process runs many: each run's own start
    cfg, paths = load_config(ROOT / params), Paths(ROOT)
    holder = f"retrain flow run {flow_run.get_name() or flow_run.get_id()}"
    try:
        with (
            ops.run_lock(ROOT, holder, cfg.schedule.lock_wait_seconds),
            tags(project_tag(ROOT)),
            # the train stage's process, started first: it gets ready while the rest runs
            take_ahead(ROOT, "train", params) as trainer,
        ):
            mark_orphans(ROOT)
            return _chain(cfg, paths, params, force, trainer)
    except RunLocked as exc:  # another run is doing the work: not a failure, no alert
        get_run_logger().warning(str(exc))
        return Cancelled(message=str(exc))


class Day:
    """The day's decision, made when the run reaches the window stage (ingest, validate and
    drift done): score the open forecasts from the new rows, act on decay, then retrain or
    stop. A retrain on drift or decay starts every fit cold (:data:`COLD_ENV`, set until
    ``cold_env`` closes)."""

    def __init__(
        self, cfg: Config, paths: Paths, force: bool, cold_env: contextlib.ExitStack
    ) -> None:
        self.cfg, self.paths, self.force, self.cold_env = cfg, paths, force, cold_env
        self.seen: forecast.Monitoring | None = None
        self.notes: list[str] = []
        self.drift: dict[str, Any] = {}
        self.retrain, self.message = True, ""
        self.publishing = Publishing(cfg, paths, self)

    def decide(self) -> bool:
        cfg, logger = self.cfg, get_run_logger()
        with untagged():  # yesterday's forecasts
            self.seen = seen = monitor(cfg, self.paths, publish=False)
        self.notes = forecast.act_on_decay(cfg, ROOT, seen, logger)
        decayed = bool(seen.decayed) and cfg.monitor.on_decay == "retrain"
        self.drift = drift = json.loads(self.paths.drift.read_text(encoding="utf-8"))
        retrain, message = ops.retrain_decision(cfg.drift.on_drift, drift["drift"], self.force)
        if decayed and not retrain:
            retrain, message = True, "a champion decayed: retraining"
        self.retrain, self.message = retrain, message
        if not retrain:
            logger.info(message)
            return False
        drifted = [d["ticker"] for d in drift["tickers"] if d["drift"]]
        if drifted:
            logger.warning("drift in %s", drifted)
        cold = "; ".join(
            [
                *([f"drift in {drifted}"] if drifted else []),
                *[d.message(cfg.monitor) for d in seen.decayed],
            ]
        )
        # drift or decay: every fit starts cold
        self.cold_env.enter_context(ops.env_set(COLD_ENV, cold or None))
        return True


def _chain(
    cfg: Config, paths: Paths, params: str, force: bool, trainer: StageAhead
) -> dict[str, Any]:
    """The run under the lock: sources, scoring, drift, the chain, push, the forecast, the
    summary artifact."""
    from stockcast import live

    logger = get_run_logger()
    with untagged():
        news = check_sources(cfg, paths)
    logger.info(news.message())
    if not news.tickers and not force:
        made = None
        if paths.validated.exists():  # rows another run ingested may score a forecast
            with untagged():
                monitor(cfg, paths)
                made = forecast_next(cfg, paths)
        note = f"# stockcast retrain\n\nNothing to do: {news.message()}.\n"
        _artifact(note, key="retrain-check")
        return {"status": "up to date", "message": news.message(), **_made(made)}
    # The gate's libraries while ingest runs. TensorFlow is imported by the train stage's own
    # process, which builds and traces the networks on the other core while the stages
    # before it run here (flows.plan.StageAhead); this process imports it while the networks
    # fit, for evaluate.
    from flows.warmup import BEFORE_VALIDATE, preload

    preload(BEFORE_VALIDATE)
    # One pass over DVC's stages, each a subflow of this run: ingest whatever DVC says
    # (sources outside data/raw, URLs and other folders, are not DVC deps), then validate and
    # drift as stale; at window, the day decides whether the rest runs.
    with contextlib.ExitStack() as cold_env:
        day = Day(cfg, paths, force, cold_env)
        try:
            run_stages(
                ROOT,
                params=params,
                stale=frozenset({"ingest"}),
                while_training=day.publishing,
                before={"window": day.decide},
                ahead={"train": trainer},
            )
        finally:
            if not day.publishing.done:  # a stage after window failed before train ran
                day.publishing()
            day.publishing.report()
    seen, notes, drift = day.seen, day.notes, day.drift
    if seen is None:  # never: run_stages reaches window or raises
        raise StockcastError("the retrain run ended before its window stage")
    if not day.retrain:
        with untagged():
            made = forecast_next(cfg, paths)
        body = ops.summary_markdown({}, {}, drift) + f"\n{day.message}\n\n"
        _artifact(body + live.markdown(made.rows, seen.summary, notes))
        return {"status": "no drift", "tickers": news.tickers, "drift": False, **_made(made)}
    with untagged():
        made = forecast_next(cfg, paths)
    pushed = cfg.schedule.push and ops.dvc_remote_configured(ROOT)
    if pushed:
        with untagged():
            push()
    metrics = json.loads(paths.metrics.read_text(encoding="utf-8"))
    registry = json.loads(paths.registry.read_text(encoding="utf-8"))
    notes.append(record_run(cfg, registry))
    _artifact(
        ops.summary_markdown(metrics, registry, drift)
        + live.markdown(made.rows, seen.summary, notes)
    )
    return {
        "status": "retrained",
        "tickers": news.tickers,
        "drift": drift["drift"],
        "decayed": [d.ticker for d in seen.decayed],
        "pushed": pushed,
        "registry": registry,
        **_made(made),
    }


def record_run(cfg: Config, registry: dict[str, Any]) -> str:
    """Commit the run's work tree onto ``refs/stockcast/runs`` and tag each version this run
    registered with it (:mod:`stockcast.restore`). Returns the note for the summary."""
    from stockcast.restore import TAG
    from stockcast.restore import record_run as commit_run
    from stockcast.store import client_for

    logger = get_run_logger()
    try:
        sha = commit_run(ROOT, f"stockcast retrain {flow_run.get_name() or ''}".strip())
    except StockcastError as exc:
        logger.warning(
            "the run is not recorded in git, so its versions cannot be restored: %s", exc
        )
        return f"Not recorded in git: {exc}"
    client = client_for(ROOT)
    for decision in registry.values():
        if "version" in decision and not decision.get("already_registered"):
            client.set_model_version_tag(decision["model"], decision["version"], TAG, sha)
    logger.info("run recorded as commit %s on refs/stockcast/runs", sha[:12])
    return (
        f"Recorded as commit `{sha[:12]}` (refs/stockcast/runs): `stockcast restore --ticker T "
        "--version N` brings a version back."
    )


def _made(made: forecast.Forecasts | None) -> dict[str, Any]:
    if made is None:
        return {}
    return {"forecasts_recorded": made.appended.added, "forecasts_kept": made.appended.kept}


def serve(params: str = "params.yaml") -> None:
    """Register the ``retrain`` deployment with the cron schedule from params and serve it.

    ``pause_on_shutdown=False``: stopping the server process leaves the schedule active, so a
    restart never silently switches the daily run off.
    """
    from prefect.schedules import Cron

    cfg = load_config(ROOT / params)
    retrain.serve(
        name=cfg.schedule.name,
        schedules=[Cron(cfg.schedule.cron, timezone=cfg.schedule.timezone)],
        parameters={"params": params},
        pause_on_shutdown=False,
        global_limit=1,  # one run of the deployment at a time, whoever triggers it
        description="stockcast daily retraining: fetch, validate, drift, train, register",
        tags=["stockcast", project_tag(ROOT)],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.retrain", description=__doc__)
    parser.add_argument("command", choices=["serve", "run"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--force", action="store_true", help="run even without new data")
    parser.add_argument(
        "--port", type=int, default=4200, help="port of the Prefect server started when none is set"
    )
    args = parser.parse_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        # This module imported Prefect already: run again in a child process whose settings
        # (and training workers) carry the URL of the server started here from the start.
        serving = args.command == "serve"
        with prefect_api(port=args.port if serving else None, links=serving) as url:
            child = [sys.executable, "-m", "flows.retrain", *(argv or sys.argv[1:])]
            return subprocess.call(child, env={**os.environ, "PREFECT_API_URL": url})
    if args.command == "serve":
        print(f"serving retrain/{load_config(ROOT / args.params).schedule.name}")
        serve(args.params)
        return 0
    # the train stage's process first, a fork with this one's imports (flows.plan.StageAhead)
    with started_ahead(ROOT, "train", args.params), tags(project_tag(ROOT)):
        state = retrain(params=args.params, force=args.force, return_state=True)
    if state.is_cancelled():
        print(f"stockcast retrain did not start: {state.message}", file=sys.stderr)
        return 3
    try:
        result = state.result()
    except StockcastError as exc:
        print(f"\nstockcast retrain stopped:\n{exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in result.items() if k != "registry"}, indent=2))
    return 0


if __name__ == "__main__":
    from flows.env import exit_now

    exit_now(main())
