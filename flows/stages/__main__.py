"""``python -m flows.stages STAGE [--params FILE]``: one stage, as ``dvc repro`` runs it."""

from __future__ import annotations

import argparse
import sys

from flows.stages import stage_flows


def main(argv: list[str] | None = None) -> int:
    flows = stage_flows()
    parser = argparse.ArgumentParser(prog="python -m flows.stages", description=__doc__)
    parser.add_argument("stage", choices=list(flows), help="the dvc.yaml stage to run")
    parser.add_argument("--params", default="params.yaml", help="the parameters file")
    args = parser.parse_args(argv)
    from stockcast.errors import StockcastError

    try:
        flows[args.stage](params=args.params)
    except StockcastError as exc:
        print(f"\nstockcast {args.stage} stopped:\n{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from flows.env import exit_now

    exit_now(main())
