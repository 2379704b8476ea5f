"""``stockcast``: command-line entry points that need no orchestrator.

``stockcast validate FILE...`` ingests and validates without training: exit 0 when every
ticker passes (repairs and warnings are printed), 1 with a readable report when not.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from stockcast.errors import StockcastError


def _validate(args: argparse.Namespace) -> int:
    import pandas as pd

    from stockcast.config import Source, WindowConfig, load_config
    from stockcast.errors import DataError
    from stockcast.ingest import combine
    from stockcast.sources import load
    from stockcast.validate import validate_prices

    params = Path(args.params)
    cfg = load_config(params) if params.exists() else None
    window = cfg.window if cfg else WindowConfig()
    min_rows = args.min_rows if args.min_rows is not None else window.min_rows
    date_order = args.date_order or (cfg.data.date_order if cfg else "auto")
    results, errors = [], []
    for spec in args.files:
        try:
            results.extend(load(Source(path=spec), Path.cwd(), date_order))
        except DataError as exc:
            errors.append(exc)
    for exc in errors:
        print(f"FAILED to read {exc}\n", file=sys.stderr)
    if not results:
        return 1
    ingested = combine(results)
    for repair in ingested.repairs:
        print(f"repair: {repair}")
    v = cfg.validate if cfg else None
    report = validate_prices(
        ingested.frame,
        min_rows,
        Path(args.reports),
        today=pd.Timestamp.now().normalize(),
        max_daily_move=v.max_daily_move if v else 0.25,
        max_gap_days=v.max_gap_days if v else 14,
    )
    print(report.summary())
    ok = report.success and not errors
    print(f"\nvalidation {'passed' if ok else 'FAILED'}; results in {args.reports}/validation.json")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stockcast", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="ingest and validate files, no training")
    validate.add_argument("files", nargs="+", help="CSV files, folders, globs or URLs")
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
