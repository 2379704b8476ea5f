"""The canonical table's columns, named once: every stage, the served model and the CLI
read them from here."""

from __future__ import annotations

PRICES = ("open", "high", "low", "close")  # the prices a bar carries; a target is one of them
OHLCV = (*PRICES, "volume")  # a day's raw inputs, in the order a model's window holds them
CANONICAL = ("date", "ticker", *OHLCV)  # the ingested table, column by column
