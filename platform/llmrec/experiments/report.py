"""The experiment report: :func:`analyse` a log, write it as Markdown and a plot.

``jobs/experiment_report.py`` prints it and logs it to MLflow; ``jobs/promote.py
--experiment`` promotes on it (:func:`llmrec.experiments.guard.experiment_gate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from llmrec.experiments.analysis import (
    CLICK,
    Analysis,
    compare,
    cumulative,
    decided_after,
    position_table,
    requests_frame,
    units_frame,
    variant_table,
)


def analyse(
    impressions: pa.Table | pd.DataFrame,
    events: pa.Table | pd.DataFrame,
    experiment: str,
    order: Sequence[str] = (),
    metric: str = "ctr",
    reward_events: Sequence[str] = (CLICK,),
    alpha: float = 0.05,
    bootstrap: int = 1000,
    seed: int = 0,
    points: int = 25,
) -> Analysis:
    """The report of one experiment's log (its impressions and attributed events).

    Args:
        order: the variants, control first (the spec's order; default: a variant named
            ``control`` first, then the others by name).
        metric: ``ctr`` (attributed clicks / items shown) or ``reward_per_user`` (the
            summed value of ``reward_events`` per user) decides.
        alpha: 1 - the confidence level, split over the challengers (Bonferroni) when there
            are several.

    Raises:
        ValueError: no answer of ``experiment`` in the log, or an unknown control.
    """
    requests = requests_frame(impressions, events, reward_events)
    if requests.empty:
        raise ValueError(f"no answers of experiment {experiment!r} in the log")
    seen = sorted(set(requests["variant"]), key=lambda v: (v != "control", v))
    variants = [v for v in order if v in seen] + [v for v in seen if v not in order]
    control, challengers = variants[0], variants[1:]
    warnings = []
    if not challengers:
        warnings.append(f"only {control!r} answered: nothing to compare")
    units = units_frame(requests)
    per_unit = units.groupby("unit")["variant"].nunique()
    moved = set(per_unit[per_unit > 1].index)
    if moved:
        warnings.append(
            f"{len(moved)} users were served by more than one variant (weights or variants "
            "changed while the experiment ran); they are left out of the comparison"
        )
    served = {v: sorted(set(requests.loc[requests["variant"] == v, "model_uri"])) for v in variants}
    for v, uris in served.items():
        if len(uris) > 1:
            warnings.append(
                f"variant {v!r} was answered by {len(uris)} versions ({', '.join(uris)}): "
                "its numbers mix them"
            )
    kept = requests[~requests["unit"].isin(moved)]
    level = 1 - alpha / max(1, len(challengers))
    comparisons, curves = [], {}
    for challenger in challengers:
        c = compare(
            units_frame(kept), control, challenger, metric, level, bootstrap=bootstrap, seed=seed
        )
        curve = cumulative(kept, control, challenger, metric, level, points)
        comparisons.append(dataclasses.replace(c, decided_after=decided_after(curve, c.decision)))
        curves[challenger] = curve
    return Analysis(
        experiment=experiment,
        control=control,
        table=variant_table(requests, units, variants),
        positions=position_table(requests, events, variants),
        comparisons=comparisons,
        cumulative=curves,
        served=served,
        warnings=warnings,
        slots=slot_table(impressions, events, variants),
    )


def from_log(
    segments_dir: str | Path,
    experiment: str,
    state: str | Path | None = None,
    **options: Any,
) -> Analysis:
    """:func:`analyse` an experiment's log: its Parquet segments under ``segments_dir``,
    after exporting what the serving state (``state``, the impression log's SQLite file,
    when it exists) has not exported yet; the variants' order (the control first) comes from
    there too. ``options`` go to :func:`analyse`."""
    from llmrec.experiments.impressions import ImpressionLog, read_log

    order: list[str] = []
    if state is not None and Path(state).exists():
        log = ImpressionLog(state, segments_dir)
        log.export()
        order = log.variants(experiment)
    impressions, events = read_log(segments_dir, experiment)
    return analyse(impressions, events, experiment, order, **options)


def markdown(analysis: Analysis) -> str:
    """The report as Markdown: per-variant table, decisions, CTR by position."""
    table = analysis.table.copy()
    for col in ("ctr", "reward_per_user"):
        table[col] = table[col].map(lambda x: f"{x:.4f}")
    for col in ("latency_p50_ms", "latency_p95_ms", "value"):
        table[col] = table[col].map(lambda x: f"{x:.1f}")
    lines = [f"# Experiment {analysis.experiment}", "", _md(table), ""]
    for c in analysis.comparisons:
        lines.append(f"- {c.sentence()}")
        if c.bootstrap:
            lines.append(
                f"  (bootstrap over users: [{c.bootstrap[0]:+.4f}, {c.bootstrap[1]:+.4f}])"
            )
    lines += [f"- warning: {w}" for w in analysis.warnings]
    pos = analysis.positions
    if not pos.empty:
        wide = pos.pivot(index="position", columns="variant", values="ctr")
        wide = wide[[v for v in analysis.table["variant"] if v in wide.columns]]
        lines += ["", "CTR by position (clicks / answers that showed it):", ""]
        lines.append(_md(wide.map(lambda x: f"{x:.4f}").reset_index()))
    if not analysis.slots.empty:
        slots = analysis.slots.assign(ctr=analysis.slots["ctr"].map(lambda x: f"{x:.4f}"))
        lines += ["", "CTR of exploration slots and of the others (exploited):", ""]
        lines.append(_md(slots))
    return "\n".join(lines) + "\n"


def _md(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def figure(analysis: Analysis) -> Any:
    """The cumulative difference of each challenger with its interval, as users arrived."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for c in analysis.comparisons:
        curve = analysis.cumulative[c.challenger]
        ax.plot(curve["users"], curve["difference"], label=f"{c.challenger} - {c.control}")
        ax.fill_between(curve["users"], curve["low"], curve["high"], alpha=0.25)
    ax.axhline(0.0, color="black", linewidth=0.8)
    metric = analysis.comparisons[0].metric if analysis.comparisons else "ctr"
    level = analysis.comparisons[0].level if analysis.comparisons else 0.95
    ax.set_xlabel("users so far")
    ax.set_ylabel(f"difference in {metric} ({level:.0%} interval)")
    ax.set_title(f"Experiment {analysis.experiment}")
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def metrics(analysis: Analysis) -> dict[str, float]:
    """Flat numbers for MLflow: per variant and per comparison."""
    out: dict[str, float] = {}
    for row in analysis.table.to_dict("records"):
        for key, value in row.items():
            if isinstance(value, int | float | np.integer | np.floating) and np.isfinite(value):
                out[f"{row['variant']}/{key}"] = float(value)
    for c in analysis.comparisons:
        for key in ("difference", "low", "high", "p_value"):
            out[f"{c.challenger}_vs_{c.control}/{key}"] = float(getattr(c, key))
        if c.users_needed:
            out[f"{c.challenger}_vs_{c.control}/users_needed"] = float(c.users_needed)
    return out


def slot_table(
    impressions: pa.Table | pd.DataFrame, events: pa.Table | pd.DataFrame, order: Iterable[str]
) -> pd.DataFrame:
    """CTR of exploration slots against the others (exploited), per variant: items shown in
    each kind of slot, clicks on them, CTR; empty when no answer explored."""
    imp = impressions.to_pandas() if isinstance(impressions, pa.Table) else impressions
    ev = events.to_pandas() if isinstance(events, pa.Table) else events
    imp = imp.drop_duplicates("request_id")
    explored = imp["explored"] if "explored" in imp else pd.Series([None] * len(imp))
    marks = {
        rid: set(e) if e is not None else set()
        for rid, e in zip(imp["request_id"], explored, strict=True)
    }
    if not any(marks.values()):
        return pd.DataFrame(columns=["variant", "slot", "shown", "clicks", "ctr"])
    clicks = ev[(ev["event"] == CLICK) & ev["position"].notna()]
    clicks = clicks[clicks["request_id"].isin(set(marks))]
    rows = []
    for v in order:
        mine = imp[imp["variant"] == v]
        n_explored = sum(len(marks[r]) for r in mine["request_id"])
        n_shown = int(mine["items"].map(len).sum())
        hit = clicks[clicks["variant"] == v]
        at = zip(hit["request_id"], hit["position"], strict=True)
        on = sum(int(p) in marks[r] for r, p in at)
        for slot, shown, c in (
            ("explored", n_explored, on),
            ("exploited", n_shown - n_explored, len(hit) - on),
        ):
            rows.append(
                {
                    "variant": v,
                    "slot": slot,
                    "shown": shown,
                    "clicks": c,
                    "ctr": c / shown if shown else float("nan"),
                }
            )
    return pd.DataFrame(rows)


__all__ = ["analyse", "figure", "from_log", "markdown", "metrics", "slot_table"]
