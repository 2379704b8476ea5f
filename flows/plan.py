"""The stages a run brings up to date, from DVC's own graph and judgement: their order and
upstream (``dvc.yaml``), which are stale (``dvc status``), each run as its Prefect flow in
this process and recorded (``dvc commit``) as ``dvc repro`` would."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from flows.server import BIN, venv_env
from flows.warmup import AFTER_TRAIN, preload

DEFAULT_PARAMS = "params.yaml"


def dvc(
    *args: str, env: dict[str, str] | None = None, quiet: bool = False, cwd: Path | None = None
) -> int:
    """Run the venv's ``dvc`` with its ``python`` first on PATH (stage commands use it)."""
    env = venv_env(env or None)
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.run([str(BIN / "dvc"), *args], env=env, stdout=out, stderr=out, cwd=cwd)
    return proc.returncode


def out_of_date(root: Path, targets: list[str] | None = None) -> list[str] | None:
    """The stages ``dvc status`` finds out of date (their deps, params or outs changed) or
    whose data files changed, by name; None when it could not tell (it failed)."""
    proc = subprocess.run(
        [str(BIN / "dvc"), "status", "--json", *(targets or [])],
        env=venv_env(), cwd=root, capture_output=True, text=True,
    )  # fmt: skip
    try:
        found = json.loads(proc.stdout or "{}") if proc.returncode == 0 else None
    except json.JSONDecodeError:
        return None
    return None if found is None else [name.rsplit(":", 1)[-1] for name in found]


def stage_order(
    repo: Any, targets: list[str] | None = None, single_item: bool = False
) -> list[str]:
    """The stages to consider, upstream first, from DVC's graph: every stage, or the targets
    and their upstream (only the targets with ``single_item``)."""
    from dvc.repo.reproduce import plan_repro

    from stockcast.errors import StockcastError

    graph = repo.index.graph
    by_name = {stage.addressing: stage for stage in graph}
    if unknown := sorted(set(targets or []) - set(by_name)):
        raise StockcastError(f"unknown stage(s) {unknown}; dvc.yaml has {sorted(by_name)}")
    if single_item and targets:
        order = [s.addressing for s in plan_repro(graph)]
        return [name for name in order if name in targets]
    chosen = [by_name[t] for t in targets] if targets else None
    return [s.addressing for s in plan_repro(graph, chosen)]


def planned_stages(
    root: Path, targets: list[str] | None = None, force: bool = False, single_item: bool = False
) -> list[str]:
    """What a run would run now: the stale stages (per ``dvc status``) and every stage
    downstream of one, in DVC's order."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        order = stage_order(repo, targets, single_item)
        graph = repo.index.graph
        by_name = {stage.addressing: stage for stage in graph}
        stale = {name for name in order if force or repo.status(targets=[name])}
        # edges point from a stage to its upstream: a stage's ancestors are its downstream
        reached = stale | {d.addressing for s in stale for d in nx.ancestors(graph, by_name[s])}
    return [name for name in order if name in reached]


def run_stages(
    root: Path,
    targets: list[str] | None = None,
    force: bool = False,
    single_item: bool = False,
    params: str = DEFAULT_PARAMS,
    stale: frozenset[str] = frozenset(),
    while_training: Callable[[], object] | None = None,
    before: Mapping[str, Callable[[], bool]] | None = None,
    ahead: Mapping[str, StageAhead] | None = None,
) -> list[str]:
    """Run the stale stages in this process, as Prefect flows, upstream first. ``stale``:
    stages to run whatever DVC says (ingest, when a URL source has a new day DVC cannot see).
    ``while_training``: work run in the background while train runs (done before the next
    stage starts), or after the stages when train did not run. ``before``: a check called
    when the run reaches a stage (whether or not it is stale); False ends the run there.
    ``ahead``: stages run in the process of their own the caller started with the run
    (:class:`StageAhead`), which gets ready while the stages before it run; the caller ends
    it.

    DVC judges what is stale (``dvc status`` per stage, after its upstream has run) and
    records what ran (``dvc commit``, once the stages end); meanwhile the DVC hashes of
    what ran are in ``STOCKCAST_DVC_OUTS`` for the stages after it (the lineage tags of
    validate's and register's MLflow runs: :func:`stockcast.lineage.dvc_lineage`). A stage
    that fails is not committed; those that ran before it are. With a parameters file other
    than ``params.yaml``, DVC's record does not describe the run: every selected stage runs
    and nothing is committed.

    Returns:
        The stages that ran.

    Raises:
        StockcastError: a stage failed (its own message, e.g. the validation report).
    """
    from dvc.repo import Repo

    from flows.stages import stage_flows

    own_params = params == DEFAULT_PARAMS
    flows_by_stage = stage_flows()
    ran: list[str] = []
    pending: list[str] = []  # ran, not yet recorded in dvc.lock
    started = dict(ahead or {})
    fresh = FreshOuts()
    with Repo(str(root)) as repo, fresh:
        order = stage_order(repo, targets, single_item)
        warming = None
        try:
            for name in order:
                if before is not None and name in before and not before[name]():
                    break
                unchanged = name not in stale and not repo.status(targets=[name])
                if own_params and not force and unchanged:
                    print(f"Stage '{name}' didn't change, skipping", flush=True)
                    if name in started:
                        started[name].close()
                    continue
                print(f"Running stage '{name}':\n> python -m flows.stages {name}", flush=True)
                apart = name in started and started[name].alive()
                warming = _warm_while(name, order, root, warming, while_training, apart)
                if name == "train":
                    while_training = None  # started beside the fits
                if not (apart and started[name].run()):
                    _run_stage(flows_by_stage[name], name, params)
                ran.append(name)
                pending.append(name)
                if own_params:
                    fresh.add(repo, name)
        except BaseException:
            if own_params and pending:  # what ran before the failure, never the failed stage
                with contextlib.suppress(Exception):  # the failure is the run's to report
                    _commit(repo, pending, single_item)
            raise
        else:
            if own_params and pending:
                _commit(repo, pending, single_item)
        finally:  # a failed stage waits for a store's migrations to end, never cuts them
            if warming is not None:
                warming.join()
    if while_training is not None:
        while_training()
    if not own_params:
        print(f"ran with {params}: dvc.lock was left as it was (it records params.yaml runs)")
    return ran


class FreshOuts:
    """The DVC hashes of the datasets a run's lineage names (:data:`stockcast.lineage.DATASETS`)
    made by the stages it has run and not yet recorded in ``dvc.lock``, in
    ``STOCKCAST_DVC_OUTS`` (JSON: each output's ``dvc.yaml`` path to its hash) while the
    block lasts, for the stages after them, in this process or told to one ahead. Each is
    hashed as ``dvc commit`` hashes it, and DVC keeps the hash (its state database): the
    commit at the end does not read the files again."""

    def __init__(self) -> None:
        from stockcast.lineage import DATASETS, FRESH_OUTS

        self.hashes: dict[str, str] = {}
        self.name = FRESH_OUTS
        self.wanted = {path for _, path in DATASETS.values()}
        self.makers = {stage for stage, _ in DATASETS.values()}
        self.before = os.environ.get(FRESH_OUTS)

    def __enter__(self) -> FreshOuts:
        os.environ.pop(self.name, None)  # a served process runs many runs: none of the last
        return self

    def __exit__(self, *exc: object) -> None:
        os.environ.pop(self.name, None)
        if self.before is not None:
            os.environ[self.name] = self.before

    def add(self, repo: Any, name: str) -> None:
        """Hash the datasets the stage ``name``, which has just run, made."""
        if name not in self.makers:
            return
        (stage,) = [s for s in repo.index.stages if s.addressing == name]
        outs = [out for out in stage.outs if str(out.def_path) in self.wanted]
        for out in outs:
            out.save()
            self.hashes[str(out.def_path)] = str(out.hash_info.value)
        if outs:
            os.environ[self.name] = json.dumps(self.hashes)


def _commit(repo: Any, ran: list[str], single_item: bool) -> None:
    """Record stages that ran in ``dvc.lock`` as ``dvc commit -f`` does: each stage no other
    of ``ran`` is downstream of, with its upstream (every stage upstream of one that ran
    either ran or was found up to date), in one write of ``dvc.lock`` each: a write costs
    0.25-0.75 s (DVC reads ``dvc.yaml`` and ``dvc.lock`` back a dozen times), so a day's run
    writes it twice (its leaves: drift and register), not once per stage.
    ``single_item`` runs leave stale stages upstream: each stage that ran alone then."""
    import networkx as nx

    if single_item:
        for name in ran:
            repo.commit(target=name, force=True)
        return
    graph = repo.index.graph
    by_name = {stage.addressing: stage for stage in graph}
    # edges point from a stage to its upstream: a stage's ancestors are its downstream
    leaves = [
        n for n in ran if not {d.addressing for d in nx.ancestors(graph, by_name[n])} & set(ran)
    ]
    for name in leaves:
        repo.commit(target=name, with_deps=True, force=True)  # DVC: "Updating lock file"


def _warm_while(
    name: str,
    order: list[str],
    root: Path,
    warming: Any,
    beside: Callable[[], object] | None = None,
    apart: bool = False,
) -> Any:
    """While train runs, import what evaluate and register need (TensorFlow too when the
    fits run ``apart``, in a process of their own) and open the tracking store, then run
    ``beside``; before any later stage, wait for that: never two migrations of one store,
    never two writers at once."""
    from stockcast.tracking import prepare_store

    if name == "train" and ({"evaluate", "register"} & set(order) or beside is not None):
        store = partial(prepare_store, root) if "register" in order else None

        def then() -> None:
            if apart and "evaluate" in order:
                from stockcast.models import import_keras

                with contextlib.suppress(Exception):  # evaluate's own import reports it
                    import_keras()
            try:
                if store is not None:
                    store()
            finally:  # its own failure is its stage's to report; beside's is beside's
                if beside is not None:
                    beside()

        return preload(AFTER_TRAIN, then=then)
    if warming is not None:  # done long ago
        warming.join()
    return warming


class StageAhead:
    """A stage in a process of its own, started with the run, before the stages upstream of
    it: it imports what it needs and prepares what it can (the train stage: TensorFlow, and
    the networks built and traced) on the other core while they run, then waits
    (:func:`flows.stages.__main__.when_told`). :meth:`run` tells it to run, as a subflow of
    this process's flow run, with this process's ``STOCKCAST_*`` variables as they are then,
    and waits for it; leaving the block ends a process never told (it has written nothing).

    Started before this process has any thread (a command's ``main``, before its flow), the
    process is a fork of this one and has its imports already (Prefect, pandas: 2 s);
    otherwise it is ``python -m flows.stages STAGE --when-told FILE`` (or ``command``).
    On two cores the daily job's stages before train keep one core busy; the train process's
    start-up (6.5-7 s: TensorFlow, three networks traced) overlaps them instead of following them.
    """

    def __init__(
        self, root: Path, stage: str, params: str, command: list[str] | None = None
    ) -> None:
        import sys
        import tempfile
        import threading

        self.stage = stage
        handle, name = tempfile.mkstemp(prefix=f"stockcast-{stage}-", suffix=".txt")
        os.close(handle)
        self.error_file = Path(name)
        self.pid = 0
        self.code: int | None = None
        if command is None and hasattr(os, "fork") and threading.active_count() == 1:
            self._fork(root, params)
            return
        command = command or [sys.executable, "-m", "flows.stages", stage, "--params", params]
        proc = subprocess.Popen(
            [*command, "--when-told", str(self.error_file)],
            cwd=root, env=venv_env(), stdin=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.pid, self.told = proc.pid, proc.stdin

    def _fork(self, root: Path, params: str) -> None:
        """The process as a fork of this one, told through a pipe."""
        import sys

        read, write = os.pipe()
        sys.stdout.flush()  # or both processes would write what is buffered
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the stage's process: never returns
            code = 1
            try:
                os.close(write)
                os.chdir(root)
                os.environ["PATH"] = venv_env()["PATH"]
                from flows.stages.__main__ import when_told

                with os.fdopen(read, encoding="utf-8") as told:
                    code = when_told(self.stage, params, told, self.error_file)
            except BaseException:  # noqa: BLE001 - said, and the exit code says it failed
                import traceback

                traceback.print_exc()
            finally:
                from flows.env import exit_now

                exit_now(code)
        os.close(read)
        self.told = os.fdopen(write, "w", encoding="utf-8")

    def __enter__(self) -> StageAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def alive(self) -> bool:
        return self._poll() is None

    def _poll(self, wait: bool = False) -> int | None:
        """The process's exit code once it ended (waiting for it with ``wait``), else None."""
        if self.code is None:
            try:
                pid, status = os.waitpid(self.pid, 0 if wait else os.WNOHANG)
            except ChildProcessError:  # reaped already
                return self.code
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def close(self) -> None:
        """End the process if it still waits (or still gets ready)."""
        import signal

        if self._poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self._poll(wait=True)
        if self.told is not None and not self.told.closed:
            with contextlib.suppress(OSError):
                self.told.close()
        self.error_file.unlink(missing_ok=True)

    def run(self) -> bool:
        """Run the stage there and wait for it; False if the process is gone before it
        was told (the stage then runs here).

        Raises:
            StockcastError: the stage failed (its message), or its process died.
        """
        from prefect.runtime import flow_run

        from flows.stages import PIPELINE_RUN
        from stockcast.errors import StockcastError

        told = {k: v for k, v in os.environ.items() if k.startswith("STOCKCAST_")}
        if run_id := flow_run.get_id():
            told[PIPELINE_RUN] = str(run_id)
        try:
            assert self.told is not None
            self.told.write(json.dumps(told) + "\n")
            self.told.close()
        except OSError:  # it died getting ready: nothing ran there
            self._poll(wait=True)
            return False
        code = self._poll(wait=True)
        if code != 0:
            said = self.error_file.read_text(encoding="utf-8").strip()
            raise StockcastError(
                f"stockcast {self.stage} stopped:\n"
                + (said or f"its process ended with exit code {code}")
            )
        return True


_STARTED: dict[str, StageAhead] = {}  # started by a command before its flow run


@contextlib.contextmanager
def started_ahead(root: Path, stage: str, params: str) -> Any:
    """Start ``stage``'s process now, before the flow run that will use it exists (a fork
    with this process's imports, while it has no thread yet); the flow takes it with
    :func:`take_ahead`. Ended when the block ends."""
    with StageAhead(root, stage, params) as started:
        _STARTED[stage] = started
        try:
            yield started
        finally:
            _STARTED.pop(stage, None)


def take_ahead(root: Path, stage: str, params: str) -> StageAhead:
    """``stage``'s process started before this flow run (:func:`started_ahead`), or one
    started now."""
    started = _STARTED.pop(stage, None)
    return started if started is not None and started.alive() else StageAhead(root, stage, params)


def _run_stage(flow: Any, name: str, params: str) -> None:
    """One stage's flow; its failure names the stage."""
    from stockcast.errors import StockcastError

    try:
        with stage_settings():
            flow(params=params)
    except StockcastError as exc:
        raise StockcastError(f"stockcast {name} stopped:\n{exc}") from exc


def stage_settings() -> Any:
    """Prefect settings for a stage's flow run inside the pipeline flow run: no heartbeat.

    A flow run's heartbeat thread sleeps in 1 s steps, and the run's end waits for it to
    wake: about 1 s at the end of every flow run, 8 s over a default run's stage flows. A
    stage flow runs in the pipeline flow run's process, whose own heartbeat goes on, and
    ``mark_orphans`` marks Crashed whatever a dead process left Running.
    """
    from prefect.settings import temporary_settings

    return temporary_settings(updates={"flows.heartbeat_frequency": None})
