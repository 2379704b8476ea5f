"""stockcast: retrain recurrent forecasters on daily stock prices.

Pure, typed logic. Nothing in this package imports Prefect; the flows in ``flows/`` wire it.
"""

__version__ = "0.1.0"
