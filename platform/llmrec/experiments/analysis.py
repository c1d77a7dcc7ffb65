"""Analysis of an online experiment from its impression log: per-variant numbers, the
difference between each challenger and the control with a 95% interval over users, and a
decision.

The unit is the one assignment used: the user (or the session, or the request when a request
carried neither). Users, not impressions, are independent: one user's clicks on the items of
one list, and on their successive lists, go together. A click-through rate (clicks / items
shown) is therefore a *ratio of per-user sums*, and its variance is taken over users by the
delta method (Deng, Knoblich and Lu 2018, "Applying the Delta Method in Metric Analytics"):
with per-user clicks ``x_u`` and items shown ``y_u``, ``R = mean(x) / mean(y)`` and
``Var(R) ~ var(x_u - R y_u) / (n mean(y)^2)``. Treating each shown item as an independent
trial (a binomial test on impressions) understates that variance and declares winners on
noise. The same formula with ``y_u = 1`` gives the per-user mean (reward per user, with
Welch's variance). A bootstrap over users (resampling users in each arm) is computed beside
it as a check that needs no normal approximation; the decision uses the delta method, which
is exact to first order, costs nothing, and gives the number of users needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import norm

Decision = Literal["better", "worse", "not yet distinguishable"]
METRICS = ("ctr", "reward_per_user")
CLICK = "click"


@dataclass(frozen=True)
class Comparison:
    """A challenger against the control on one metric (difference = challenger - control)."""

    metric: str
    control: str
    challenger: str
    control_value: float
    challenger_value: float
    difference: float
    low: float
    high: float
    level: float
    p_value: float
    users: tuple[int, int]
    """Users (units) in the control and the challenger."""
    users_needed: int | None
    """Users in all (at the current split) for 80% power at the observed difference."""
    decided_after: int | None
    """Users from which the running interval has excluded 0 on the decided side."""
    bootstrap: tuple[float, float] | None
    decision: Decision

    @property
    def relative(self) -> float | None:
        return self.difference / self.control_value if self.control_value else None

    def sentence(self) -> str:
        """The decision in one line, with its numbers."""
        name = {"ctr": "CTR", "reward_per_user": "reward per user"}[self.metric]
        pct = f" ({self.relative:+.1%})" if self.relative is not None else ""
        head = (
            f"{self.challenger} vs {self.control}: {name} {self.challenger_value:.4f} vs "
            f"{self.control_value:.4f}, difference {self.difference:+.4f}{pct}, "
            f"{self.level:.0%} CI [{self.low:+.4f}, {self.high:+.4f}], p={self.p_value:.4f} "
            f"(delta method over {sum(self.users):,} users)"
        )
        if self.decision != "not yet distinguishable":
            after = (
                f"; the interval has excluded 0 since {self.decided_after:,} users"
                if self.decided_after
                else ""
            )
            return f"{head}: {self.challenger} is {self.decision.upper()}{after}"
        need = (
            f"; about {self.users_needed:,} users in all would detect a difference of this "
            "size with 80% power at this split"
            if self.users_needed
            else ""
        )
        return f"{head}: NOT YET DISTINGUISHABLE{need}"


@dataclass
class Analysis:
    """Everything the report shows of one experiment."""

    experiment: str
    control: str
    table: pd.DataFrame
    """One row per variant."""
    positions: pd.DataFrame
    """CTR by position (1 = the top) per variant."""
    comparisons: list[Comparison]
    cumulative: dict[str, pd.DataFrame]
    """Per challenger: the difference and its interval as users arrived."""
    served: dict[str, list[str]]
    """Per variant: the concrete versions (``models:/name/N``) that answered."""
    warnings: list[str] = field(default_factory=list)
    slots: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Per variant and slot kind (explored, exploited): items shown, clicks, CTR."""

    def comparison(self, challenger: str) -> Comparison:
        return next(c for c in self.comparisons if c.challenger == challenger)


def requests_frame(
    impressions: pa.Table | pd.DataFrame,
    events: pa.Table | pd.DataFrame,
    reward_events: Sequence[str] = (CLICK,),
) -> pd.DataFrame:
    """One row per answer: unit, variant, version, time, latency, items shown, clicks,
    reward (summed ``value`` of ``reward_events``) and each event kind's count."""
    imp = impressions.to_pandas() if isinstance(impressions, pa.Table) else impressions.copy()
    ev = events.to_pandas() if isinstance(events, pa.Table) else events.copy()
    imp = imp.drop_duplicates("request_id")
    imp["shown"] = imp["items"].map(len).astype("int64")
    ev = ev[ev["request_id"].isin(set(imp["request_id"]))]
    per = ev.pivot_table(
        index="request_id", columns="event", values="value", aggfunc="size", fill_value=0
    )
    reward = ev[ev["event"].isin(list(reward_events))].groupby("request_id")["value"].sum()
    columns = ["request_id", "unit", "variant", "model_uri", "model_version", "timestamp"]
    out = imp[[*columns, "latency_ms"]]
    out = out.assign(shown=imp["shown"]).set_index("request_id")
    out = out.join(per).fillna({c: 0 for c in per.columns})
    if CLICK not in out:
        out[CLICK] = 0
    out["reward"] = reward.reindex(out.index).fillna(0.0)
    out["value"] = ev.groupby("request_id")["value"].sum().reindex(out.index).fillna(0.0)
    return out.reset_index()


def units_frame(requests: pd.DataFrame) -> pd.DataFrame:
    """Per (unit, variant): first answer's time, requests, items shown, clicks, reward."""
    grouped = requests.groupby(["unit", "variant"], sort=False)
    return grouped.agg(
        first=("timestamp", "min"),
        requests=("request_id", "size"),
        shown=("shown", "sum"),
        clicks=(CLICK, "sum"),
        reward=("reward", "sum"),
    ).reset_index()


def ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, float, float]:
    """``sum(num) / sum(den)`` over units: (value, variance of the value, per-unit variance
    of its linearisation) by the delta method."""
    n = len(num)
    if n == 0 or den.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    r = float(num.sum() / den.sum())
    lin = (num - r * den) / den.mean()
    s2 = float(lin.var(ddof=1)) if n > 1 else float("nan")
    return r, s2 / n, s2


def _parts(units: pd.DataFrame, variant: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    rows = units[units["variant"] == variant]
    if metric == "ctr":
        return rows["clicks"].to_numpy(float), rows["shown"].to_numpy(float)
    return rows["reward"].to_numpy(float), np.ones(len(rows))


def compare(
    units: pd.DataFrame,
    control: str,
    challenger: str,
    metric: str = "ctr",
    level: float = 0.95,
    power: float = 0.8,
    bootstrap: int = 1000,
    seed: int = 0,
) -> Comparison:
    """The challenger against the control over per-unit sums (:func:`units_frame`)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    xc, yc = _parts(units, control, metric)
    xt, yt = _parts(units, challenger, metric)
    rc, vc, sc = ratio(xc, yc)
    rt, vt, st = ratio(xt, yt)
    diff, se = rt - rc, float(np.sqrt(vc + vt))
    z = float(norm.ppf(0.5 + level / 2))
    low, high = diff - z * se, diff + z * se
    p = float(2 * norm.sf(abs(diff) / se)) if se > 0 else float("nan")
    decision: Decision = "not yet distinguishable"
    if low > 0:
        decision = "better"
    elif high < 0:
        decision = "worse"
    n = len(xc) + len(xt)
    needed = None
    if diff != 0 and np.isfinite(sc + st) and len(xc) and len(xt):
        wc, wt = len(xc) / n, len(xt) / n
        zz = (z + float(norm.ppf(power))) ** 2
        needed = int(np.ceil(zz * (sc / wc + st / wt) / diff**2))
    boot = _bootstrap(xc, yc, xt, yt, bootstrap, level, seed) if bootstrap else None
    return Comparison(
        metric=metric,
        control=control,
        challenger=challenger,
        control_value=rc,
        challenger_value=rt,
        difference=diff,
        low=low,
        high=high,
        level=level,
        p_value=p,
        users=(len(xc), len(xt)),
        users_needed=needed,
        decided_after=None,
        bootstrap=boot,
        decision=decision,
    )


def _bootstrap(
    xc: np.ndarray,
    yc: np.ndarray,
    xt: np.ndarray,
    yt: np.ndarray,
    draws: int,
    level: float,
    seed: int,
) -> tuple[float, float] | None:
    """Percentile interval of the difference, users resampled within each arm."""
    if min(len(xc), len(xt)) < 2:
        return None
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, draws, 100):
        b = min(100, draws - start)
        out = []
        for x, y in ((xc, yc), (xt, yt)):
            idx = rng.integers(0, len(x), (b, len(x)))
            den = y[idx].sum(axis=1)
            out.append(np.divide(x[idx].sum(axis=1), den, out=np.full(b, np.nan), where=den > 0))
        diffs.append(out[1] - out[0])
    d = np.concatenate(diffs)
    tail = 100 * (1 - level) / 2
    return float(np.nanpercentile(d, tail)), float(np.nanpercentile(d, 100 - tail))


def cumulative(
    requests: pd.DataFrame,
    control: str,
    challenger: str,
    metric: str = "ctr",
    level: float = 0.95,
    points: int = 25,
) -> pd.DataFrame:
    """The difference and its interval on the answers given up to each of ``points``
    moments (with the feedback they received), as users arrived."""
    pair = requests[requests["variant"].isin([control, challenger])]
    firsts = np.sort(pair.groupby("unit")["timestamp"].min().to_numpy())
    rows = []
    if len(firsts) == 0:
        return pd.DataFrame(columns=["users", "time", "difference", "low", "high"])
    marks = np.unique(np.linspace(0, len(firsts) - 1, min(points, len(firsts))).astype(int))
    for m in marks[marks >= min(len(firsts) - 1, 9)]:  # at least 10 users
        t = firsts[m]
        c = compare(
            units_frame(pair[pair["timestamp"] <= t]),
            control,
            challenger,
            metric,
            level,
            bootstrap=0,
        )
        rows.append((int(m) + 1, float(t), c.difference, c.low, c.high))
    return pd.DataFrame(rows, columns=["users", "time", "difference", "low", "high"])


def decided_after(curve: pd.DataFrame, decision: Decision) -> int | None:
    """The users from which every later interval excluded 0 on the side decided."""
    if decision == "not yet distinguishable" or curve.empty:
        return None
    side = curve["low"] > 0 if decision == "better" else curve["high"] < 0
    flags = side.to_numpy()
    if not flags[-1]:
        return None
    last_miss = np.flatnonzero(~flags)
    start = int(last_miss[-1]) + 1 if len(last_miss) else 0
    return int(curve["users"].iloc[start])


def variant_table(
    requests: pd.DataFrame, units: pd.DataFrame, order: Iterable[str]
) -> pd.DataFrame:
    """Per variant: versions, users, requests, items shown, events by kind, value, CTR,
    reward per user, latency p50/p95."""
    kinds = sorted(c for c in requests.columns if c not in _REQUEST_COLUMNS)
    rows = []
    for v in order:
        r, u = requests[requests["variant"] == v], units[units["variant"] == v]
        shown = int(r["shown"].sum())
        rows.append(
            {
                "variant": v,
                "versions": ",".join(sorted(set(r["model_version"]))),
                "users": len(u),
                "requests": len(r),
                "impressions": shown,
                **{k: int(r[k].sum()) for k in kinds},
                "value": float(r["value"].sum()),
                "ctr": float(r[CLICK].sum() / shown) if shown else float("nan"),
                "reward_per_user": float(u["reward"].mean()) if len(u) else float("nan"),
                "latency_p50_ms": float(np.percentile(r["latency_ms"], 50)) if len(r) else np.nan,
                "latency_p95_ms": float(np.percentile(r["latency_ms"], 95)) if len(r) else np.nan,
            }
        )
    return pd.DataFrame(rows)


_REQUEST_COLUMNS = {
    "request_id",
    "unit",
    "variant",
    "model_uri",
    "model_version",
    "timestamp",
    "latency_ms",
    "shown",
    "reward",
    "value",
}


def position_table(
    requests: pd.DataFrame, events: pd.DataFrame, order: Iterable[str]
) -> pd.DataFrame:
    """CTR at each position: clicks there / answers that showed that many items."""
    ev = events.to_pandas() if isinstance(events, pa.Table) else events
    clicks = ev[(ev["event"] == CLICK) & ev["position"].notna()]
    clicks = clicks[clicks["request_id"].isin(set(requests["request_id"]))]
    k = int(requests["shown"].max()) if len(requests) else 0
    rows = []
    for v in order:
        shown = requests.loc[requests["variant"] == v, "shown"].to_numpy()
        at = clicks[clicks["variant"] == v]["position"].astype(int).value_counts()
        for p in range(1, k + 1):
            n = int((shown >= p).sum())
            c = int(at.get(p, 0))
            rows.append(
                {
                    "variant": v,
                    "position": p,
                    "answers": n,
                    "clicks": c,
                    "ctr": c / n if n else float("nan"),
                }
            )
    return pd.DataFrame(rows)
