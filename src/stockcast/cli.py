"""``stockcast``: the project's front door. Run it from the project's root.

``stockcast run`` runs the pipeline (every stale stage; ``make pipeline``), ``stockcast
retrain`` one daily retrain now, ``stockcast schedule`` serves that flow on its cron schedule,
``stockcast ui`` the MLflow UI, ``stockcast compare`` the experiments side by side.

``stockcast predict`` writes next-day forecasts of every ticker's ``@champion``, with
prediction intervals (``lower_80`` .. ``upper_95``), the next day recorded in the forecast
ledger; ``stockcast ledger`` prints every forecast served with what happened (``--summary``:
the live skill against the ``last_close`` rule); ``stockcast fetch`` appends the providers'
new days (yfinance, akshare) to their raw files; ``stockcast restore --ticker T --version N``
brings back the code, data and models a version was made by;
``stockcast rollback --ticker T`` moves ``@champion`` back to the previous champion;
``stockcast serve --ticker T`` serves ``@champion`` over HTTP and ``stockcast request --ticker T``
prints the JSON body it takes.

``stockcast validate [FILE...]`` (default: the sources in params.yaml) ingests and validates
without training: exit 0 when every
ticker passes (repairs and warnings are printed), 1 with a readable report when not.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stockcast.columns import OHLCV
from stockcast.errors import StockcastError


def _validate(args: argparse.Namespace) -> int:
    import pandas as pd

    from stockcast.config import Source, config_from_dict, load_config
    from stockcast.errors import DataError
    from stockcast.ingest import combine
    from stockcast.sources import load, shown
    from stockcast.validate import validate_prices

    params = Path(args.params)
    # Without a params file, the defaults (the seed's spans) decide the thresholds.
    cfg = (
        load_config(params)
        if params.exists()
        else config_from_dict({"data": {"sources": [{"path": "-"}]}})
    )
    min_rows = args.min_rows if args.min_rows is not None else cfg.min_rows
    date_order = args.date_order or cfg.data.date_order
    # No files named: the sources params.yaml configures, with their column mappings.
    specs = [Source(path=f) for f in args.files] if args.files else list(cfg.data.sources)
    if not args.files and not params.exists():
        raise StockcastError(f"no files given and no {params} to read data.sources from")
    results, errors = [], []
    for spec in specs:
        try:
            results.extend(load(spec, Path.cwd(), date_order))
        except DataError as exc:
            errors.append(exc)
    for exc in errors:
        print(f"FAILED to read {exc}\n", file=sys.stderr)
    if not results:
        return 1
    ingested = combine(results)
    for repair in ingested.repairs:
        print(f"repair: {repair}")
    report = validate_prices(
        ingested.frame,
        min_rows,
        Path(args.reports),
        today=pd.Timestamp.now().normalize(),
        max_daily_move=cfg.validate.max_daily_move,
        max_gap_days=cfg.validate.max_gap_days,
        sources=shown(ingested.origin, Path.cwd()),
        rows_needed="" if args.min_rows is not None else cfg.rows_needed(),
        absent=ingested.absent,
    )
    print(report.summary())
    ok = report.success and not errors
    print(f"\nvalidation {'passed' if ok else 'FAILED'}; results in {args.reports}/validation.json")
    return 0 if ok else 1


def _rollback(args: argparse.Namespace) -> int:
    from stockcast.config import load_config
    from stockcast.ingest import sanitize_ticker
    from stockcast.registry import rollback
    from stockcast.store import client_for

    cfg = load_config(args.params)
    name = cfg.register.model_name(sanitize_ticker(args.ticker))
    old, new = rollback(client_for(Path.cwd()), name, args.reason)
    print(f"{name}: @champion moved back from v{old} to v{new} ({args.reason})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    """Every champion's next ``horizon`` days; the next day also goes into the ledger."""
    import pandas as pd

    from stockcast.config import load_config
    from stockcast.paths import Paths
    from stockcast.registry import CHAMPION
    from stockcast.stages.forecast import forecast_all, validated

    cfg = load_config(args.params)
    paths = Paths(Path.cwd())
    frame = validated(paths)
    made = forecast_all(cfg, paths)
    rows = []
    for ticker, group in frame.groupby("ticker", sort=True):
        name = cfg.register.model_name(str(ticker))
        if (champion := made.champions.get(name)) is not None:
            model_ref = f"{name}/{champion.version}"
            rows += _forecast_rows(champion, group, model_ref, cfg.data.target, args.horizon)
    for name in made.missing:
        print(f"no @{CHAMPION} for {name}: nothing promoted yet (see reports/registry.json)")
    if not rows:
        return 1
    out = pd.DataFrame(rows)
    target = paths.root / "data/predictions" / f"{max(out['as_of'])}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(target, index=False)
    print(out.to_string(index=False))
    print(f"\nwritten to {target}")
    print(_ledger_line(made.appended, paths.forecast_ledger))
    return 0


def _ledger_line(appended: Any, path: Path) -> str:
    kept = f", {appended.kept} already there (kept as first made)" if appended.kept else ""
    return f"ledger: {appended.added} next-day forecast(s) recorded{kept} in {path}"


def _ledger(args: argparse.Namespace) -> int:
    """The forecast ledger as CSV: every forecast, its realised value and the rule's."""
    from stockcast import ledger
    from stockcast.config import load_config
    from stockcast.paths import Paths
    from stockcast.stages.forecast import scored_table

    cfg = load_config(args.params)
    paths = Paths(Path.cwd())
    table = scored_table(paths)
    if table.empty:
        print(
            f"the ledger is empty ({paths.forecast_ledger}): `stockcast predict` or the daily "
            "job (make retrain) records a forecast",
            file=sys.stderr,
        )
        return 0
    if args.summary:
        sys.stdout.write(ledger.summary(table, cfg.monitor.min_dm_days).to_csv(index=False))
        return 0
    levels = ledger.levels_of(table.columns)
    columns = [c for c in ledger.forecast_columns(levels) if c != "recorded_at"]
    columns += ["actual_date", "actual", "error", *[f"hit_{lv}" for lv in levels], "recorded_at"]
    sys.stdout.write(table[columns].to_csv(index=False))
    return 0


def _forecast_rows(champion: Any, group: Any, name: str, target: str, horizon: int) -> list[dict]:
    """One ticker's next ``horizon`` trading days from its champion, with intervals."""
    import pandas as pd

    from stockcast.serving import forecast

    last = pd.Timestamp(group["date"].iloc[-1])
    ohlcv = group[list(OHLCV)].to_numpy()
    model = champion.model
    variant = (model.metadata.metadata or {}).get("variant", "?")
    return [
        {
            "ticker": group["ticker"].iloc[0],
            "as_of": last.date(),
            "step": step,
            "date": (last + pd.offsets.BDay(step)).date(),
            **{
                (f"forecast_{target}" if k == "forecast" else k): round(v, 4)
                for k, v in values.items()
            },
            "model": name,
            "variant": variant,
        }
        for step, values in enumerate(
            forecast(model, ohlcv, horizon, target, champion.bands), start=1
        )
    ]


def _fetch(args: argparse.Namespace) -> int:
    """Bring every provider source's raw file up to date (``make pipeline`` does it too)."""
    from stockcast.config import load_config

    cfg = load_config(args.params)
    if not any(s.provider for s in cfg.data.sources):
        print("no provider source in data.sources (provider: yfinance | akshare)")
        return 0
    from flows.repro import fetch_providers

    fetch_providers(Path.cwd(), cfg)
    return 0


def _restore(args: argparse.Namespace) -> int:
    """Bring back the code, params, data and models a registered version was made by."""
    from stockcast.config import load_config
    from stockcast.ingest import sanitize_ticker
    from stockcast.restore import TAG, restore
    from stockcast.store import client_for

    cfg = load_config(args.params)
    name = cfg.register.model_name(sanitize_ticker(args.ticker))
    version = client_for(Path.cwd()).get_model_version(name, str(args.version))
    tags = version.tags
    commit = tags.get(TAG) or (tags.get("git_commit") if tags.get("git_dirty") == "False" else None)
    if not commit or commit == "unknown":
        raise StockcastError(
            f"{name} v{args.version} was registered from a work tree that differs from its "
            f"commit ({tags.get('git_commit', '?')}, git_dirty={tags.get('git_dirty', '?')}) "
            f"and has no {TAG} tag (the daily job records one): it cannot be restored exactly"
        )
    into = Path(args.into or f"restored/{name}-v{args.version}")
    restore(Path.cwd(), commit, into)
    print(f"{name} v{args.version}: commit {commit[:12]} with its data and models in {into}/")
    print(f"(cd {into} && dvc status) shows it matches; `git worktree remove {into}` drops it")
    return 0


EXIT_CODES = """exit codes (the same for make pipeline and the retrain flow):
  0  done
  1  a data, validation or training failure (the message says which)
  2  usage: a bad option or argument, or an unexpected error
  3  another stockcast run holds the project's lock (nothing was done)"""

SERVE_PORT = 5001  # the MLflow UI (make ui) has 5000


def _champion_meta(args: argparse.Namespace) -> tuple[str, Any, dict]:
    """The ticker's registered model name, its @champion pyfunc and that model's metadata."""
    from stockcast.config import load_config
    from stockcast.ingest import sanitize_ticker
    from stockcast.registry import CHAMPION, load_champion

    cfg = load_config(args.params)
    name = cfg.register.model_name(sanitize_ticker(args.ticker))
    model = load_champion(Path.cwd(), name)
    if model is None:
        raise StockcastError(f"no @{CHAMPION} for {name}: nothing promoted yet")
    return name, model, model.metadata.metadata or {}


def _request(args: argparse.Namespace) -> int:
    """The JSON body ``/invocations`` takes for the ticker's champion: its last ``context``
    days of raw OHLCV from the validated table, as ``{"inputs": [[[o, h, l, c, v], ...]]}``."""
    import json

    import pandas as pd

    from stockcast.config import load_config
    from stockcast.ingest import sanitize_ticker
    from stockcast.paths import Paths
    from stockcast.serving import model_inputs

    _, _, meta = _champion_meta(args)
    paths = Paths(Path.cwd())
    if not paths.validated.exists():
        raise StockcastError(f"{paths.validated} not found: run `make pipeline` first")
    frame = pd.read_parquet(paths.validated)
    rows = frame[frame["ticker"] == sanitize_ticker(args.ticker)]
    context = int(meta.get("context", meta.get("window")))
    if len(rows) < context:
        raise StockcastError(
            f"{args.ticker}: {len(rows)} validated days, the model takes {context}"
        )
    ohlcv = rows[list(OHLCV)].to_numpy(dtype="float64")[-context:]
    target = load_config(args.params).data.target
    print(json.dumps({"inputs": model_inputs(meta, ohlcv[None], target).tolist()}))
    return 0


def _serve(args: argparse.Namespace) -> int:
    """``mlflow models serve`` of the ticker's @champion, in this environment (no rebuild)."""
    from stockcast.registry import CHAMPION
    from stockcast.store import tracking_uri

    name, _, meta = _champion_meta(args)
    context = meta.get("context", meta.get("window"))
    print(
        f"serving models:/{name}@{CHAMPION} ({meta.get('variant', '?')}) "
        f"on http://{args.host}:{args.port}/invocations; "
        f"it takes {context} days of raw OHLCV per forecast: "
        f"`stockcast request --ticker {args.ticker}` prints a request body",
        flush=True,
    )
    command, env = serve_command(
        f"models:/{name}@{CHAMPION}", args.host, args.port, args.workers, tracking_uri(Path.cwd())
    )
    os.execve(command[0], command, env)
    return 0  # not reached: the server replaces this process


def serve_command(
    model_uri: str, host: str, port: int, workers: int, store: str
) -> tuple[list[str], dict[str, str]]:
    """``mlflow models serve`` of ``model_uri`` from this environment, and its environment.

    MLflow starts ``uvicorn`` through ``bash -c``, found on ``PATH``: this interpreter's
    folder goes first, so ``.venv/bin/stockcast serve`` works from a shell whose ``PATH``
    lacks the venv. No artifact download bar.
    """
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    command = [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", model_uri]
    command += ["--env-manager", "local", "--host", host, "--port", str(port)]
    return [*command, "--workers", str(workers)], env


def _exec(command: list[str], env: dict[str, str] | None = None) -> int:
    """Replace this process by ``command`` (its exit code is the command's)."""
    if not (Path.cwd() / "flows").is_dir() and "-m" in command:
        raise StockcastError(f"{Path.cwd()} is not a stockcast project: run from its root")
    os.execve(command[0], command, env or dict(os.environ))
    return 0  # not reached


def _run(args: argparse.Namespace) -> int:
    return _exec([sys.executable, "-m", "flows.repro", *args.rest])


def _retrain(args: argparse.Namespace) -> int:
    extra = ["--force"] if args.force else []
    return _exec([sys.executable, "-m", "flows.retrain", "run", "--params", args.params, *extra])


def _schedule(args: argparse.Namespace) -> int:
    command = [sys.executable, "-m", "flows.retrain", "serve", "--params", args.params]
    return _exec([*command, "--port", str(args.port)])


def _ui(args: argparse.Namespace) -> int:
    from stockcast.store import shown_uri, tracking_uri

    root = Path.cwd()
    print(f"MLflow UI on {shown_uri(tracking_uri(root))}: open {ui_link(args.port, root)}")
    command = [str(Path(sys.executable).parent / "mlflow"), "server"]
    command += ["--backend-store-uri", tracking_uri(root)]
    command += ["--default-artifact-root", str(root / "mlruns"), "--workers", "1"]
    command += ["--host", "127.0.0.1", "--port", str(args.port)]
    return _exec(command, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def _compare(args: argparse.Namespace) -> int:
    import json
    import subprocess

    from stockcast.compare import table

    dvc = str(Path(sys.executable).parent / "dvc")
    shown = subprocess.run([dvc, "exp", "show", "--json"], capture_output=True, text=True)
    if shown.returncode != 0:
        raise StockcastError(f"dvc exp show failed: {shown.stderr.strip()[-500:]}")
    print(table(json.loads(shown.stdout or "[]"), args.width))
    print("every metric's change against HEAD: dvc metrics diff")
    return 0


def ui_link(port: int, root: Path, experiment: str = "stockcast") -> str:
    """The UI's page of the training runs: the experiment's runs in the classic (machine
    learning) view. MLflow's UI opens in its GenAI view unless the URL asks otherwise (its
    ``workflowType`` parameter wins over the browser's remembered choice); in the shared view
    the pipeline's runs tag the experiment with (:mod:`stockcast.ui_view`) when there is one."""
    from stockcast.config import load_config
    from stockcast.store import client_for

    params = root / "params.yaml"
    name = load_config(params).register.experiment if params.exists() else experiment
    from stockcast import ui_view

    found = client_for(root).get_experiment_by_name(name)
    base = f"http://127.0.0.1:{port}/#/experiments"
    if found is None:
        return f"{base}?workflowType=machine_learning"
    # the runs page in the view the pipeline's runs wrote (its figures as columns and charts)
    shared = f"&viewStateShareKey={ui_view.VIEW_KEY}" if ui_view.TAG in found.tags else ""
    return f"{base}/{found.experiment_id}/runs?workflowType=machine_learning{shared}"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number")
    return value


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(
        prog="stockcast",
        description=__doc__.replace("``", ""),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stockcast {version('stockcast')}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="the pipeline: every stale stage (make pipeline); e.g. run --force, run train "
        "--single-item, run --params other.yaml, run -S train.epochs=5",
    )
    run.add_argument("rest", nargs="*", help="options of python -m flows.repro (run --help)")
    run.set_defaults(handler=_run)
    retrain = commands.add_parser(
        "retrain", help="one run of the daily retrain flow now (make retrain)"
    )
    retrain.add_argument("--params", default="params.yaml", help="the parameters file")
    retrain.add_argument("--force", action="store_true", help="run even without new data")
    retrain.set_defaults(handler=_retrain)
    schedule = commands.add_parser(
        "schedule", help="serve the retrain flow on its cron schedule (make schedule)"
    )
    schedule.add_argument("--params", default="params.yaml", help="the parameters file")
    schedule.add_argument("--port", type=int, default=4200, help="the Prefect server's port")
    schedule.set_defaults(handler=_schedule)
    ui = commands.add_parser("ui", help="the MLflow UI for the project's store (make ui)")
    ui.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1")
    ui.set_defaults(handler=_ui)
    compare = commands.add_parser(
        "compare", help="the workspace, HEAD and the DVC experiments side by side (make compare)"
    )
    compare.add_argument("--width", type=_positive, default=120, help="the table's columns")
    compare.set_defaults(handler=_compare)
    validate = commands.add_parser("validate", help="ingest and validate files, no training")
    validate.add_argument(
        "files",
        nargs="*",
        help="CSV files, folders, globs or URLs (default: data.sources of --params)",
    )
    validate.add_argument(
        "--params",
        default="params.yaml",
        help="thresholds and spans (default: ./params.yaml if present)",
    )
    validate.add_argument(
        "--reports",
        default="reports/validation-cli",
        help="where validation.json and data_docs/ go",
    )
    validate.add_argument(
        "--min-rows",
        type=int,
        default=None,
        help="fewest rows per ticker (default: from the window params)",
    )
    validate.add_argument(
        "--date-order",
        choices=["auto", "month_first", "day_first"],
        default=None,
        help="how to read NN/NN/YYYY dates the data cannot tell",
    )
    validate.set_defaults(handler=_validate)
    predict = commands.add_parser("predict", help="next-day forecasts from every @champion")
    predict.add_argument("--params", default="params.yaml", help="the parameters file")
    predict.add_argument("--horizon", type=int, default=1, help="trading days ahead")
    predict.set_defaults(handler=_predict)
    ledger = commands.add_parser(
        "ledger", help="every forecast served, scored against what happened, as CSV"
    )
    ledger.add_argument(
        "--summary",
        action="store_true",
        help="live metrics per ticker and model version instead: RMSE over the last 20 and 60 "
        "scored days beside last_close's, coverage, Diebold-Mariano",
    )
    ledger.add_argument("--params", default="params.yaml", help="the parameters file")
    ledger.set_defaults(handler=_ledger)
    rollback = commands.add_parser("rollback", help="move @champion back to the previous one")
    rollback.add_argument("--ticker", required=True, help="whose @champion to move back")
    rollback.add_argument(
        "--reason", default="manual rollback", help="why, kept as a tag on both versions"
    )
    rollback.add_argument("--params", default="params.yaml", help="the parameters file")
    rollback.set_defaults(handler=_rollback)
    serve = commands.add_parser(
        "serve", help="serve a ticker's @champion over HTTP (mlflow models serve, this venv)"
    )
    serve.add_argument("--ticker", required=True, help="whose @champion to serve")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    serve.add_argument("--port", type=int, default=SERVE_PORT, help="port (the UI has 5000)")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="server processes, each with the model loaded (default 1; on 2 cores see "
        "benchmarks/serving.py)",
    )
    serve.add_argument("--params", default="params.yaml", help="the parameters file")
    serve.set_defaults(handler=_serve)
    fetch = commands.add_parser(
        "fetch", help="append the providers' new days to their raw files (yfinance, akshare)"
    )
    fetch.add_argument("--params", default="params.yaml", help="the parameters file")
    fetch.set_defaults(handler=_fetch)
    restore_ = commands.add_parser(
        "restore", help="the code, data and models a registered version was made by, in a folder"
    )
    restore_.add_argument("--ticker", required=True, help="whose version to restore")
    restore_.add_argument("--version", required=True, type=int, help="the registered version")
    restore_.add_argument("--into", default=None, help="the folder (default restored/<model>-v<N>)")
    restore_.add_argument("--params", default="params.yaml", help="the parameters file")
    restore_.set_defaults(handler=_restore)
    request = commands.add_parser(
        "request", help="print the JSON body /invocations takes for a ticker's latest days"
    )
    request.add_argument("--ticker", required=True, help="whose @champion the body is for")
    request.add_argument("--params", default="params.yaml", help="the parameters file")
    request.set_defaults(handler=_request)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; errors are reported in words, never as a bare traceback."""
    for key, value in {
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }.items():
        os.environ.setdefault(key, value)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:  # every option, --help included, is the pipeline's own
        try:
            return _exec([sys.executable, "-m", "flows.repro", *argv[1:]])
        except StockcastError as exc:
            print(f"stockcast run: {exc}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except StockcastError as exc:
        print(f"stockcast {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the promise is: no bare traceback
        if os.environ.get("STOCKCAST_DEBUG"):
            raise
        print(
            f"stockcast {args.command}: unexpected {type(exc).__name__}: {exc}\n"
            "(set STOCKCAST_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
