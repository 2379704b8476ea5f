"""Training configurations on the seed's job, each a whole default pipeline run: how long it
takes and how accurate its forecasters are (issue 13: which model and batch defaults are fast
without trading accuracy).

Each configuration is a list of params overrides; each runs ``python -m flows.repro`` in its
own temporary copy of the project (``end_to_end.pipeline``), one after another. Per
configuration and variant it prints the epochs run over its 4 fits, the train stage and total
wall, and the validation and backtest RMSE against the best baseline of that span: the
columns defaults are chosen on. The test span's figure is printed last, read after, never
used to choose.

    .venv/bin/python benchmarks/train_configs.py [--configs seed_model,u32_b128 ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = {  # name -> (train.units, train.batch_size, train.learning_rate); the rest as params.yaml
    "seed_model": ("[80,100]", 64, 0.001),
    "seed_model_b256": ("[80,100]", 256, 0.002),
    "u32x2_b128": ("[32,32]", 128, 0.001),
    "u32x2_b128_lr2": ("[32,32]", 128, 0.002),
    "u64_b128_lr2": ("[64]", 128, 0.002),
    "u32x2_b256_lr3": ("[32,32]", 256, 0.003),
}


def overrides(name: str) -> list[str]:
    units, batch, rate = CONFIGS[name]
    return [f"train.units={units}", f"train.batch_size={batch}", f"train.learning_rate={rate}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="names from CONFIGS")
    parser.add_argument("-S", dest="common", action="append", default=[], help="for every one")
    args = parser.parse_args()
    from benchmarks.end_to_end import pipeline

    print(
        "| configuration | variant | epochs (4 fits) | train stage s | total wall s "
        "| val × best baseline | backtest × best baseline | test × best baseline |\n"
        "|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    for name in args.configs.split(","):
        run = pipeline([*args.common, *overrides(name)])
        for (ticker, variant), (back, test) in sorted(run["versus"].items()):
            print(
                f"| {name} | {variant} | {run['variant_epochs'][variant]} "
                f"| {run['stages'].get('train', 0.0):.1f} | {run['wall']:.1f} "
                f"| {run['val'][(ticker, variant)]:.4f} | {back:.4f} | {test:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
