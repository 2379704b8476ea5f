"""Serving speed: a baseline rule's pyfunc and a network's, served side by side by
``mlflow models serve`` (the command ``stockcast serve`` runs), under 1 and 8 clients.

Both models are logged the way the register stage logs them, from the last ``make
pipeline`` run (its windows in ``data/processed`` and its network in ``models/``), into a
temporary store; each is served on 127.0.0.1 and sent the body ``stockcast request``
prints, by clients that loop for ``--seconds`` each. Printed: req/s, p50 and p99 latency,
and the network's figures against the rule's measured in the same run (targets: p50 at
most 3x the rule's with one client, throughput at least 0.4x with eight).

    .venv/bin/python benchmarks/serving.py [--variant gru] [--seconds 10] [--workers 1]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))


def log_models(store: str, variant: str) -> tuple[str, str, bytes]:
    """The ``last_close`` rule's and ``variant``'s pyfuncs in ``store``; their URIs and a
    request body of the newest window."""
    import mlflow

    from stockcast.config import load_config
    from stockcast.packaging import log_forecaster
    from stockcast.paths import Paths
    from stockcast.stages.evaluate import read_reports
    from stockcast.windows import read_windows

    cfg, paths = load_config(ROOT / "params.yaml"), Paths(ROOT)
    ws = next(w for w in read_windows(paths.processed) if w.ticker == "SH600519")
    scores = read_reports(paths)[ws.ticker].candidates
    keras = paths.models / ws.ticker / variant / "model.keras"
    if not keras.exists():
        raise SystemExit(f"{keras} is missing: run `make pipeline` first")
    mlflow.set_tracking_uri(store)
    uris = []
    for rule, path in (("last_close", None), (variant, keras)):
        with mlflow.start_run(run_name=f"serving benchmark {rule}"):
            mine = scores[rule]  # with its calibration: bands drawn per request, as served
            uris.append(
                log_forecaster(
                    mlflow,
                    ws,
                    path,
                    mine.interval_halfwidths,
                    rule,
                    cfg.features.moving_average,
                    mine.calibration,
                )
            )
    newest = ws.raw_inputs([len(ws.prices)], ws.context)  # the days before tomorrow
    return uris[0], uris[1], json.dumps({"inputs": newest.tolist()}).encode()


def serve(uri: str, store: str, workers: int) -> tuple[subprocess.Popen, int]:
    from flows.server import free_port
    from stockcast.cli import serve_command

    port = free_port()
    command, env = serve_command(uri, "127.0.0.1", port, workers, store)
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the server of {uri} did not start")


def load(port: int, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    """``clients`` threads posting ``body`` for ``seconds``; req/s and latency quantiles."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < end:
            started = time.perf_counter()
            conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                errors[0] += 1
        with lock:
            latencies.extend(mine)

    for _ in range(2):  # warm: the first requests of a server load and trace
        load_once(port, body)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000  # noqa: E731
    return {"rps": len(latencies) / wall, "p50": q(0.5), "p99": q(0.99), "errors": errors[0]}


def load_once(port: int, body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"the server answered {response.status}: {response.read()[:500]!r}")
    response.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="gru", choices=["simple_rnn", "lstm", "gru"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        rule_uri, net_uri, body = log_models(store, args.variant)
        figures: dict[tuple[str, int], dict[str, float]] = {}
        for label, uri in (("last_close", rule_uri), (args.variant, net_uri)):
            proc, port = serve(uri, store, args.workers)
            try:
                for clients in (1, 8):
                    figures[label, clients] = load(port, body, clients, args.seconds)
            finally:
                os.killpg(proc.pid, 15)
                proc.wait(timeout=30)
    print(f"served by mlflow models serve, {args.workers} worker(s), {args.seconds:g} s per row")
    print(f"{'model':<12} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for (label, clients), f in figures.items():
        print(
            f"{label:<12} {clients:>7} {f['rps']:>8.1f} {f['p50']:>8.1f} {f['p99']:>8.1f} "
            f"{f['errors']:>6}"
        )
    rule1, net1 = figures["last_close", 1], figures[args.variant, 1]
    rule8, net8 = figures["last_close", 8], figures[args.variant, 8]
    p50 = net1["p50"] / rule1["p50"]
    rps = net8["rps"] / rule8["rps"]
    print(f"{args.variant} vs last_close, same run: 1-client p50 {p50:.2f}x (target <= 3x: "
          f"{'met' if p50 <= 3 else 'MISSED'}); 8-client req/s {rps:.2f}x (target >= 0.4x: "
          f"{'met' if rps >= 0.4 else 'MISSED'})")  # fmt: skip


if __name__ == "__main__":
    main()
