"""``make pipeline``'s command line (``stockcast run``): bring every ``dvc.yaml`` stage up to
date, in this one process, with one Prefect API for the run (:mod:`flows.server`), under the
project's lock, and send a failure notice if one is configured.

DVC stays the judge and the record keeper (:mod:`flows.plan`). Each stage's ``cmd`` is
``python -m flows.stages STAGE``, so a plain ``dvc repro`` runs the same flows, one
interpreter per stage. Exit codes: 0 done, 1 a stage or the data gate failed, 2 usage, 3
another run holds the project.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from argparse import RawDescriptionHelpFormatter as Raw
from pathlib import Path
from typing import Any

import flows.env  # noqa: F401
from flows.orphans import end_dead_mlflow_runs, mark_orphans, project_tag
from flows.plan import DEFAULT_PARAMS, dvc, out_of_date, planned_stages, run_stages
from flows.server import flush_prefect_logs, prefect_api
from flows.warmup import import_stages


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stockcast run", description=_plain(__doc__ or ""), formatter_class=Raw
    )
    parser.add_argument(
        "targets", nargs="*", help="dvc.yaml stages to bring up to date (default: all)"
    )
    parser.add_argument("--force", action="store_true", help="rerun stages even if unchanged")
    parser.add_argument(
        "--single-item", action="store_true", help="only the named stages, not their upstream"
    )
    parser.add_argument(
        "--dry", action="store_true", help="print the stages that would run, run nothing"
    )
    parser.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run as a DVC experiment (`dvc exp run -S KEY=VALUE`); repeatable",
    )
    parser.add_argument(
        "--params",
        default=DEFAULT_PARAMS,
        help="the parameters file; another than params.yaml runs every selected stage and "
        "leaves dvc.lock alone (dvc.yaml's params name params.yaml)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from stockcast.config import load_config
    from stockcast.errors import RunLocked, StockcastError
    from stockcast.lineage import mark_pipeline_started
    from stockcast.ops import run_lock

    started = time.perf_counter()
    mark_pipeline_started()  # the MLflow parent run spans the whole pipeline run
    root = Path.cwd()
    try:
        schedule = load_config(root / args.params).schedule
        if args.dry:
            print("\n".join(planned_stages(root, args.targets, args.force, args.single_item)))
            return 0
        with run_lock(root, "make pipeline", schedule.lock_wait_seconds):
            code = _run(args)
    except RunLocked as exc:
        print(f"stockcast pipeline did not start: {exc}", file=sys.stderr)
        return 3
    except StockcastError as exc:
        print(f"stockcast pipeline stopped: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    print(f"pipeline {'finished' if code == 0 else 'FAILED'} in {elapsed:.1f} s")
    if code == 0:
        print(NEXT)
    if code != 0 and schedule.webhook:
        _notify(schedule.webhook, code, elapsed)
    if code != 0:
        _apprise(schedule.notify, code, elapsed)
    return code


def _plain(text: str) -> str:
    """A docstring as a terminal shows it: no reST roles or double backticks."""
    return re.sub(r":\w+:`([^`]+)`", r"\1", text).replace("``", "")


NEXT = (
    "next: make ui (the runs: who won and why), make predict (the next day's forecast with "
    "its intervals), make exp SET=key=value then make compare (an experiment beside this run)"
)


def _run(args: argparse.Namespace) -> int:
    if args.set_param:  # a DVC experiment: one pipeline flow run, its stages run by dvc
        print(
            f"stockcast run: a DVC experiment with {' '.join(args.set_param)} (dvc exp run "
            f"reruns what it feeds); {STARTING}",
            flush=True,
        )
        return _in_pipeline_flow(args, [])
    own_params = args.params == DEFAULT_PARAMS
    from stockcast.config import load_config

    cfg = load_config(Path.cwd() / args.params)
    fetch_providers(Path.cwd(), cfg)  # a provider's new day: data/raw changed, ingest stale
    stale = url_news(Path.cwd(), cfg)  # a URL's new day: DVC cannot see it, ingest reruns
    changed = out_of_date(Path.cwd(), args.targets)
    if own_params and not args.force and not stale and changed == []:
        print("pipeline is up to date: every stage skipped (dvc status)")
        return 0
    print(f"stockcast run: {_what_runs(args, stale, changed)}; {STARTING}", flush=True)
    return _in_pipeline_flow(args, stale)


STARTING = "starting Prefect and loading the libraries, then the stages"


def _what_runs(args: argparse.Namespace, stale: list[str], changed: list[str] | None) -> str:
    """The run's first line: what it is about to bring up to date, and why."""
    if args.force:
        return "--force: every selected stage runs"
    if args.params != DEFAULT_PARAMS:
        return f"parameters from {args.params}: every selected stage runs"
    if changed is None:
        return "dvc status could not tell what changed: each stage is judged as it comes"
    names = list(dict.fromkeys([*stale, *changed]))
    return f"out of date: {', '.join(names)} (dvc status), and what follows from them"


def _in_pipeline_flow(args: argparse.Namespace, stale: list[str]) -> int:
    from stockcast.errors import StockcastError

    needs_tf = not args.set_param and (
        not args.targets or bool(set(args.targets) & {"train", "evaluate", "register"})
    )
    with prefect_api(while_starting=lambda url: import_stages(url, needs_tf)):
        try:
            from prefect import tags

            with tags(project_tag(Path.cwd())):
                ran = pipeline_flow()(
                    args.targets, args.force, args.single_item, args.params, stale, args.set_param
                )
        except StockcastError as exc:
            print(f"\n{exc}", file=sys.stderr)
            return 1
        finally:
            flush_prefect_logs()
    if "register" in (ran or []):
        print_summary(Path.cwd())
    return 0


def print_summary(root: Path) -> None:
    """Each ticker's outcome as a table at the end of the run (the run's outputs stand
    whether or not it can be printed)."""
    import csv

    from stockcast import leaderboard
    from stockcast.paths import Paths, read_json

    numbers = ("network_x_best_baseline", "network_dm_p_value", "network_dm_p_adjusted")
    try:
        paths = Paths(root)
        with paths.leaderboard.open(encoding="utf-8", newline="") as f:
            board = [
                {**row, **{k: float(row[k] or "nan") for k in numbers}} for row in csv.DictReader(f)
            ]
        decisions = read_json(paths.registry)
        rest = paths.leaderboard.relative_to(root)
        print(f"\n{leaderboard.terminal(board, decisions, rest_in=str(rest))}", flush=True)
    except Exception as exc:  # noqa: BLE001 - a summary never fails a run that succeeded
        print(f"(no summary table: {exc})")


def url_news(root: Path, cfg: Any) -> list[str]:
    """``["ingest"]`` when a URL source has a trading day newer than the last ingest (read
    once: the ingest stage reuses the download), else ``[]``."""
    from stockcast import sources

    sources.forget_fetched()
    if not any(sources.is_url(s.path) for s in cfg.data.sources):
        return []
    from stockcast.ops import new_data
    from stockcast.paths import Paths
    from stockcast.stages.ingest import read_sources

    news = new_data(read_sources(cfg, root).frame, Paths(root).ingested)
    if news.tickers:
        print(f"{news.message()}: ingest reruns", flush=True)
        return ["ingest"]
    return []


def fetch_providers(root: Path, cfg: Any) -> None:
    """Append each provider source's new days to its raw file and ``dvc add`` it."""
    if any(s.provider for s in cfg.data.sources):
        from stockcast.stages.ingest import refresh_providers

        def track(path: Path) -> None:
            if dvc("add", str(path.relative_to(root)), quiet=True, cwd=root) != 0:
                print(f"warning: dvc add {path} failed: its new rows are not in DVC yet")

        refresh_providers(cfg, root, track=track)


LEADERBOARD_KEY, DECISION_KEY = "stockcast-leaderboard", "stockcast-decision"


def publish_verdict(root: Path) -> None:
    """The run's leaderboard as a Prefect table artifact and its verdict and decisions as a
    markdown one, on the pipeline flow run; keyed, so the Prefect UI keeps every run's."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from stockcast import leaderboard
    from stockcast.paths import Paths, read_json
    from stockcast.stages.evaluate import read_reports

    paths = Paths(root)
    reports, decisions = read_reports(paths), read_json(paths.registry)
    span = next(c.selection_span for r in reports.values() for c in r.candidates.values())
    board = leaderboard.board(reports, decisions, span)
    headline = leaderboard.run_verdict(reports, decisions, span)
    rows = [{k: None if v != v else v for k, v in row.items()} for row in board]  # NaN: none
    create_table_artifact(rows, key=LEADERBOARD_KEY, description=headline)
    decided = [f"- {leaderboard.decision_line(f'**{t}**', d)}" for t, d in decisions.items()]
    text = "\n".join([f"**{headline}**", "", *decided])
    create_markdown_artifact(text, key=DECISION_KEY, description=headline)


def run_experiment(root: Path, settings: list[str], targets: list[str]) -> list[str]:
    """``dvc exp run -S KEY=VALUE ...`` from inside the pipeline flow run: DVC runs each stale
    stage's command as its own process, whose stage flow run is a subflow of this one
    (``flows.stages.PIPELINE_RUN``). ``["register"]`` when it reran the register stage (the
    decisions file changed), so the verdict is published; else ``[]``."""
    from prefect.runtime import flow_run

    from flows.stages import PIPELINE_RUN
    from stockcast.errors import StockcastError
    from stockcast.paths import Paths

    registry = Paths(root).registry
    before = registry.stat().st_mtime_ns if registry.exists() else None
    env = {**os.environ, PIPELINE_RUN: str(flow_run.id)}
    code = dvc("exp", "run", *(f"-S{kv}" for kv in settings), *targets, env=env)
    if code != 0:
        raise StockcastError(f"dvc exp run exited {code}: the experiment stopped (see above)")
    after = registry.stat().st_mtime_ns if registry.exists() else None
    return ["register"] if after != before else []


def pipeline_flow() -> Any:
    """The ``pipeline`` flow: one flow run per ``make pipeline`` run, each stage a subflow of
    it, so the Prefect UI says whether a run as a whole succeeded and how long it took."""
    from prefect import flow, get_run_logger

    @flow(name="pipeline")
    def pipeline(
        targets: list[str] | None = None,
        force: bool = False,
        single_item: bool = False,
        params: str = DEFAULT_PARAMS,
        stale: list[str] | None = None,
        experiment: list[str] | None = None,
    ) -> list[str]:
        mark_orphans(Path.cwd())
        end_dead_mlflow_runs(Path.cwd())
        if experiment:
            ran = run_experiment(Path.cwd(), experiment, targets or [])
        else:
            ran = run_stages(
                Path.cwd(), targets, force, single_item, params=params, stale=frozenset(stale or ())
            )
        if "register" in ran:
            try:
                publish_verdict(Path.cwd())
            except Exception as exc:  # noqa: BLE001 - the run's outputs stand without them
                get_run_logger().warning("the verdict's Prefect artifacts were not made: %s", exc)
        return ran

    return pipeline


def _apprise(env_name: str | None, code: int, elapsed: float) -> None:
    from stockcast.ops import notify

    body = f"make pipeline in {Path.cwd()} failed with exit code {code} after {elapsed:.0f} s"
    try:
        sent = notify(env_name, "stockcast: make pipeline FAILED", body)
        if sent:
            print(f"failure notice sent to {sent} Apprise URL(s) in ${env_name}")
    except Exception as exc:  # noqa: BLE001 - the notice must never hide the failure
        print(f"could not send the failure notice: {exc}", file=sys.stderr)


def _notify(url: str, code: int, elapsed: float) -> None:
    from stockcast.ops import post_webhook

    payload = {"flow": "make pipeline", "state": "FAILED", "exit_code": code, "seconds": elapsed}
    payload["project"] = str(Path.cwd())
    try:
        print(f"failure posted to the webhook (HTTP {post_webhook(url, payload)})")
    except Exception as exc:  # noqa: BLE001 - the hook must never hide the failure
        print(f"could not post to the webhook {url}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    from flows.env import exit_now

    exit_now(main())
