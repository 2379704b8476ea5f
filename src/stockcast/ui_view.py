"""What MLflow's UI shows first for the project's experiment.

MLflow's UI keeps a runs page's layout (its columns, its charts, its sort) as a *shared view*:
the page's "Share" button stores it as the experiment tag ``mlflow.sharedViewState.<key>``
and a URL with ``viewStateShareKey=<key>`` opens the page in it. The project writes one such
view, so the link ``make ui`` prints opens on the runs with the figures that choose the champion
as columns (the selection span's RMSE against the best baseline, its RMSE, the Diebold-Mariano
p-value, then the test RMSE) and on a chart view that leads with the same figures. Without it
the list shows no metric at all and the charts come in alphabetical order.

The keys and shapes follow MLflow 3.x's UI code (``useSharedExperimentViewState``, the runs
charts' card classes); an unknown key is ignored by the UI, so a newer UI opens the page as
before rather than failing.
"""

from __future__ import annotations

import json
from typing import Any

VIEW_KEY = "stockcast"
TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
SECTION = "stockcast-selection"
RUN_NAME = "attributes.`Run Name`"


def headline_metrics(span: str) -> list[str]:
    """The candidate-run metrics a person reads first: those of the span that chooses."""
    return [
        f"{span}_rmse_vs_best_baseline",
        f"{span}_rmse",
        f"{span}_dm_p_value",
        "test_rmse",
    ]


def _column(kind: str, key: str) -> str:
    """A runs-table column's id, as the UI writes it (``metrics.`test_rmse```)."""
    return f"{kind}.`{key}`"


def view_state(span: str) -> dict[str, Any]:
    """The shared view: newest runs first, the headline metrics as columns after the run's
    models and dataset, and a first chart section of one bar chart per headline metric
    (the UI adds every other metric's chart below it, as it does for any view)."""
    metrics = headline_metrics(span)
    columns = [_column("attributes", "Models"), _column("attributes", "Dataset")]
    columns += [_column("metrics", m) for m in metrics]
    columns += [_column("params", "variant")]
    charts = [
        {
            "uuid": f"stockcast-{m}",
            "type": "BAR",
            "runsCountToCompare": 10,
            "metricSectionId": SECTION,
            "deleted": False,
            "isGenerated": False,
            "displayName": m,
            "metricKey": m,
        }
        for m in metrics
    ]
    sections = [
        {
            "uuid": SECTION,
            "name": f"Selection ({span}, against the best baseline)",
            "display": True,
            "isReordered": False,
            "deleted": False,
            "isGenerated": False,
        }
    ]
    return {
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "selectedColumns": columns,
        # the run's name carries the verdict: wide enough to read it, the headline figures
        # right after it (the UI sizes and orders the columns its order names; the others,
        # the date, dataset and duration, follow them)
        "columnOrder": [RUN_NAME, *columns[2:]],
        "columnWidths": {RUN_NAME: 540, **{c: 150 for c in columns[2:-1]}},
        "compareRunCharts": charts,
        "compareRunSections": sections,
        "isAccordionReordered": True,
        "hideEmptyCharts": True,
    }


def tag_value(span: str) -> str:
    """The tag's value: the view as JSON (the UI also reads a compressed form; plain JSON
    stays readable in the experiment's tags)."""
    return json.dumps(view_state(span), separators=(",", ":"), sort_keys=True)
