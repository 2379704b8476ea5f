"""The model registry: which candidate a run registers, the gate on ``@champion``, the
champion's score on this run's test span, and rollback.

The rules it applies live in :mod:`stockcast.promotion`; the run tree it registers from,
in :mod:`stockcast.tracking`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stockcast.config import RegisterConfig
from stockcast.promotion import Decision, choose_candidate, decide_promotion, gate_values, gates
from stockcast.scores import CandidateScores
from stockcast.store import client_for
from stockcast.windows import WindowSet

CHAMPION = "champion"


@contextmanager
def sys_path_kept() -> Iterator[None]:
    """Undo what loading a logged model does to ``sys.path``: MLflow puts the model's code
    folder first, for good, so every model loaded makes every later import and package
    lookup search one more folder (registering a thousand tickers went quadratic: 0.3 s a
    ticker at 100, 0.7 s at 1000). This process has ``stockcast`` installed; a model served
    elsewhere still gets its logged code."""
    saved = list(sys.path)
    try:
        yield
    finally:
        sys.path = saved


def load_champion(root: Path, name: str) -> Any | None:
    """The ``@champion`` of registered model ``name`` as a pyfunc; None when there is none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client_for(root)
    try:
        with sys_path_kept():
            return mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    except MlflowException:
        return None


@dataclass(frozen=True)
class Champion:
    """A registered model's ``@champion``: its version, the pyfunc, its static interval
    half-widths and its calibration (a :class:`stockcast.intervals.Calibration`, None for a
    model logged with fixed widths only): a later run's when one confirmed it, else those
    logged with it."""

    version: str
    model: Any
    half_widths: dict[str, float]
    calibration: Any = None

    @property
    def bands(self) -> Any:
        """What :func:`stockcast.serving.forecast` draws the bands from."""
        return self.calibration if self.calibration is not None else self.half_widths


# version tag: a later run's JSON calibration (method, scores, ... and its static half-widths
# as "widths") or, before issue 31, those half-widths by level name alone
RECALIBRATED = "intervals_recalibrated"


def load_champion_version(root: Path, name: str) -> Champion | None:
    """The ``@champion`` of ``name``, its model loaded by version number (so the version
    named is the one that forecast); None when there is none."""
    import mlflow

    version = _champion(client_for(root), name)
    if version is None:
        return None
    with sys_path_kept():
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    from stockcast.intervals import Calibration
    from stockcast.serving import calibration_of

    widths = (model.metadata.metadata or {}).get("intervals", {})
    calibration = calibration_of(model)
    if version.tags.get(RECALIBRATED):
        later = json.loads(version.tags[RECALIBRATED])
        if "method" in later:
            calibration = Calibration.from_dict(later)
            widths = later.get("widths", widths)
        else:
            widths, calibration = later, None
    fixed = {str(k): float(v) for k, v in widths.items()}
    return Champion(str(version.version), model, fixed, calibration)


@dataclass(frozen=True)
class Candidate:
    """A logged candidate of one ticker: its scores and the URI of its logged model."""

    scores: CandidateScores
    model_uri: str
    forecaster: str = ""  # a rule's identity (:func:`stockcast.packaging.forecaster_id`)


@dataclass(frozen=True)
class Choice:
    """A ticker's registration, decided before anything is logged: the candidate, why, its
    fingerprint and the version already registered with that fingerprint (None: register).
    ``own``: ``earlier`` is the champion, and the candidate is its very forecaster (the same
    rule with the same params), so nothing new is registered."""

    name: str
    why: str
    fingerprint: str
    earlier: Any | None
    own: bool = False
    adjusted_p: float | None = None  # the BH-adjusted p-value it was judged on (register.fdr)


def choose_registration(
    client: Any,
    r: RegisterConfig,
    span: str,
    ticker: str,
    scores: dict[str, CandidateScores],
    tags: dict[str, str],
    forecasters: dict[str, str] | None = None,
    adjusted_p: float | None = None,
) -> Choice:
    """The candidate to register (:func:`choose_candidate` on ``span``, the selection span:
    :func:`stockcast.scores.selection_span`) and whether this very registration exists
    already, or the candidate is the champion's own forecaster (``forecasters``: each
    rule's identity, :func:`stockcast.packaging.forecaster_id`). ``adjusted_p``: the
    ticker's Benjamini-Hochberg adjusted p-value, which ``register.fdr`` judges."""
    name, why = choose_candidate(scores, span, r.min_improvement, r.max_p_value, r.fdr, adjusted_p)
    fingerprint = registration_fingerprint(tags, name, scores[name])
    earlier = _registered_as(client, r.model_name(ticker), fingerprint) if fingerprint else None
    identity = (forecasters or {}).get(name)
    tested = adjusted_p is not None and not math.isnan(adjusted_p)
    judged = adjusted_p if r.fdr is not None and tested else None
    if earlier is None and identity:
        champion = _champion(client, r.model_name(ticker))
        if champion is not None and champion.tags.get("forecaster") == identity:
            return Choice(name, why, fingerprint, champion, own=True, adjusted_p=judged)
    return Choice(name, why, fingerprint, earlier, adjusted_p=judged)


def _champion(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def register_best(
    mlflow: Any,
    client: Any,
    r: RegisterConfig,
    span: str,
    ws: WindowSet,
    candidates: dict[str, Candidate],
    tags: dict[str, str],
    choice: Choice | None = None,
) -> dict[str, Any]:
    """Register the best forecaster of ``span`` (the selection span), network or baseline,
    and move ``@champion`` to it if it passes the gates and beats the current champion.
    ``choice``: the registration already decided (:func:`choose_registration`), else decided
    here."""
    if choice is None:
        scores = {n: c.scores for n, c in candidates.items()}
        choice = choose_registration(client, r, span, ws.ticker, scores, tags)
    name, why, fingerprint = choice.name, choice.why, choice.fingerprint
    chosen = candidates[name]
    model_name = r.model_name(ws.ticker)
    if choice.own:
        return _champions_own(client, model_name, choice, chosen.scores, tags)
    if choice.earlier is not None:
        return _already_registered(
            client, model_name, choice.earlier, name, chosen.scores.kind, why
        )
    current = champion_rmse(mlflow, client, model_name, ws)
    decision = decide_promotion(
        chosen.scores.test.rmse,
        current[0] if current else None,
        gate_values(chosen.scores, span),
        gates(r),
        current[1] if current else None,
        span,
    )
    if not decision.promote and (kept := _continuation_of_champion(client, model_name, name, tags)):
        return _not_registered(model_name, kept, name, chosen.scores, why, decision)
    version = mlflow.register_model(
        chosen.model_uri,
        model_name,
        tags={
            "variant": name,
            "kind": chosen.scores.kind,
            "selected_on": f"{span} rmse",
            "selection": why,
            **({"fingerprint": fingerprint} if fingerprint else {}),
            **({"forecaster": chosen.forecaster} if chosen.forecaster else {}),
            **(
                {"dm_p_adjusted": f"{choice.adjusted_p:.6g}"}
                if choice.adjusted_p is not None
                else {}
            ),
            **tags,
            **decision_tags(decision),
        },
    )
    client.update_model_version(
        model_name, version.version, description=_description(name, chosen.scores, decision)
    )
    if decision.promote:  # the very last step: a failure before it never moves the alias
        client.set_registered_model_alias(model_name, CHAMPION, version.version)
    return {
        "model": model_name,
        "version": version.version,
        "variant": name,
        "kind": chosen.scores.kind,
        "selection": why,
        **asdict(decision),
    }


def registration_fingerprint(tags: dict[str, str], name: str, scores: CandidateScores) -> str:
    """What makes a registration the same as an earlier one: a clean git commit, the effective
    parameters, the windowed dataset, the candidate and every score it got. Empty (always
    register) when the code is uncommitted or unknown, or the dataset hash is missing."""
    import hashlib

    commit, dirty = tags.get("git_commit", "unknown"), tags.get("git_dirty", "True")
    if commit == "unknown" or dirty != "False" or not tags.get("dvc_dataset_md5"):
        return ""
    parts = [commit, tags.get("params_hash", ""), tags["dvc_dataset_md5"], name]
    parts.append(json.dumps(scores.flat(), sort_keys=True, default=str))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _registered_as(client: Any, model_name: str, fingerprint: str) -> Any | None:
    """The version registered earlier with this fingerprint, if any."""
    found = client.search_model_versions(
        f"name = '{model_name}' and tags.fingerprint = '{fingerprint}'"
    )
    return min(found, key=lambda v: int(v.version)) if found else None


def _already_registered(
    client: Any, model_name: str, version: Any, name: str, kind: str, why: str
) -> dict[str, Any]:
    """Nothing new to register: the earlier version's decision stands."""
    try:
        champion = client.get_model_version_by_alias(model_name, CHAMPION).version
    except Exception:  # noqa: BLE001 - no champion
        champion = None
    reason = (
        f"already registered as v{version.version} (same code, params, data and scores); "
        f"its decision stands: {version.tags.get('promotion_reason', '?')}"
    )
    standing = str(champion) == str(version.version)
    return _standing(model_name, version, name, kind, why, standing, reason)


def _standing(
    model_name: str, version: Any, name: str, kind: str, why: str, promote: bool, reason: str,
    rmse: tuple[float | None, float | None] = (None, None),
) -> dict[str, Any]:  # fmt: skip
    """A decision that registers nothing: ``version`` (registered earlier) stands."""
    print(f"{model_name}: {name} {reason}", flush=True)
    return {
        "model": model_name,
        "version": version.version,
        "variant": name,
        "kind": kind,
        "selection": why,
        "promote": promote,
        "reason": reason,
        "candidate_rmse": rmse[0],
        "champion_rmse": rmse[1],
        "previous_version": version.tags.get("previous_champion"),
        "already_registered": True,
    }


def _continuation_of_champion(
    client: Any, model_name: str, name: str, tags: dict[str, str]
) -> Any | None:
    """The champion, when the candidate is its network continued by a warm run (the same
    variant, its weights carried on from the last run's): a new version only if it wins."""
    if tags.get("train_start") != "warm":
        return None
    champion = _champion(client, model_name)
    if champion is None or champion.tags.get("kind") != "network":
        return None
    return champion if champion.tags.get("variant") == name else None


def _not_registered(
    model_name: str, champion: Any, name: str, scores: CandidateScores, why: str,
    decision: Decision,
) -> dict[str, Any]:  # fmt: skip
    """A continuation of the champion that did not beat it: not registered, no copy."""
    reason = (
        f"a warm continuation of the champion (v{champion.version}, {name}) that did not "
        f"replace it: not registered ({decision.reason})"
    )
    rmse = (decision.candidate_rmse, decision.champion_rmse)
    return _standing(model_name, champion, name, scores.kind, why, True, reason, rmse)


def _champions_own(
    client: Any, model_name: str, choice: Choice, scores: CandidateScores, tags: dict[str, str]
) -> dict[str, Any]:
    """The champion's own rule chosen again: no new version. The champion's intervals are
    recalibrated with this run's residuals (a version tag the daily forecasts read)."""
    version = choice.earlier
    later: dict[str, Any] = dict(scores.interval_halfwidths)
    if scores.calibration is not None:
        later = {**scores.calibration.to_dict(), "widths": later}
    widths = json.dumps(later, sort_keys=True)
    client.set_model_version_tag(model_name, version.version, RECALIBRATED, widths)
    client.set_model_version_tag(
        model_name, version.version, "confirmed_by_run", tags.get("prefect_flow_run_id", "?")
    )
    reason = (
        f"the champion's own forecaster ({choice.name}, the same rule and params) as "
        f"v{version.version}: not registered again; it stays @champion, its intervals "
        "recalibrated on this run's residuals"
    )
    rmse = (scores.test.rmse, scores.test.rmse)  # the same forecaster on the same rows
    return _standing(model_name, version, choice.name, scores.kind, choice.why, True, reason, rmse)


def _description(name: str, scores: CandidateScores, decision: Decision) -> str:
    """A registered version's headline: its test figures beside the strongest baseline's, and
    the promotion decision."""
    test = scores.test
    return (
        f"{name} ({scores.kind}). Test RMSE {test.rmse:.4f}, {test.rmse_vs_best_baseline:.4f}x "
        f"the best baseline ({test.best_baseline}), {test.rmse_vs_naive:.4f}x naive; MAE "
        f"{test.mae:.4f}, MAPE {test.mape:.2f}%, direction right {test.directional_accuracy:.1%}."
        f" {'Promoted' if decision.promote else 'Not promoted'}: {decision.reason}."
    )


def decision_tags(decision: Decision) -> dict[str, str]:
    """The promotion decision as a registered version's tags."""
    return {
        "promotion": "promoted" if decision.promote else "rejected",
        "promotion_reason": decision.reason,
        "previous_champion": decision.previous_version or "none",
    }


def champion_rmse(mlflow: Any, client: Any, name: str, ws: WindowSet) -> tuple[float, str] | None:
    """Score the current champion on this run's test targets; None when there is none."""
    from mlflow.exceptions import MlflowException

    from stockcast.evaluate import regression_metrics
    from stockcast.serving import model_inputs, point_forecast

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    with sys_path_kept():
        model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    meta = model.metadata.metadata or {}
    needed = int(meta.get("context", meta.get("window", ws.window)))
    idx = ws.test_idx
    inputs = model_inputs(meta, ws.raw_inputs(idx, needed), ws.target)  # champion's layout
    predicted = point_forecast(model.predict(inputs))
    rmse = regression_metrics(ws.prices[idx], predicted)["rmse"]
    return rmse, str(version.version)


def rollback(client: Any, name: str, reason: str) -> tuple[str, str]:
    """Move ``@champion`` back to the version the current champion replaced.

    Returns:
        (the version rolled back from, the version now champion).

    Raises:
        StockcastError: no champion, or the champion records no previous one.
    """
    from mlflow.exceptions import MlflowException

    from stockcast.errors import StockcastError

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        raise StockcastError(f"{name} has no @{CHAMPION} to roll back") from exc
    previous = current.tags.get("previous_champion", "none")
    if previous in ("", "none"):
        raise StockcastError(
            f"{name} v{current.version} replaced no earlier champion: nothing to roll back to"
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, current.version, "rolled_back", reason)
    client.set_model_version_tag(name, previous, "restored_by_rollback_from", current.version)
    return str(current.version), str(previous)


def replace_with_rule(client: Any, name: str, rule: str, reason: str) -> str | None:
    """Move ``@champion`` of ``name`` to its newest registered version of baseline ``rule``,
    ``reason`` tagged on both versions. Returns the version now champion; None when the
    champion is that rule already or no version of it was ever registered."""
    current = _champion(client, name)
    if current is None or current.tags.get("variant") == rule:
        return None
    found = client.search_model_versions(f"name = '{name}' and tags.variant = '{rule}'")
    if not found:
        return None
    newest = max(found, key=lambda v: int(v.version))
    client.set_registered_model_alias(name, CHAMPION, newest.version)
    client.set_model_version_tag(name, current.version, "replaced_by_rule", reason)
    client.set_model_version_tag(name, newest.version, "restored_as_rule", reason)
    client.set_model_version_tag(name, newest.version, "previous_champion", current.version)
    return str(newest.version)
