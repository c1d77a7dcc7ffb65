"""Exploration measured with simulated users: new items whose appeal only the simulator knows.

The simulated users of :mod:`llmrec.experiments.simulation` are served in this process by
one registered version with new items added live (:class:`~llmrec.experiments.inprocess.
LocalVersion`): half of them *good*, each the hidden twin of an existing item (the users who
interacted with that item like it, and click it with chance ``appeal`` when they look at
it), half *bad* (nobody likes them). Every new item has the same kind of text (a generic
title, no description, a genre drawn at random whatever its twin), so that the model's
score does not reveal its appeal.

:func:`serve_traffic` serves ``rounds`` arrivals of every user (a session each, in a new
order each round) with a share of each list explored, or none, through the ingress's code:
the ranker's wider list (``k + pool``, then its best ``unproven`` items),
:func:`~llmrec.experiments.exploration.explore` over the evidence of the answers and
attributed clicks so far (:class:`~llmrec.experiments.exploration.ItemEvidence`: the
impression log's counts) and the version's training interactions, the answer an
:class:`~llmrec.experiments.attribution.Impression`, each click attributed by request id.
:func:`summary` compares runs without and with exploration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from llmrec.experiments.attribution import Attributed, Impression, attribute
from llmrec.experiments.exploration import ExploreSettings, ItemEvidence, explore, explore_key
from llmrec.experiments.inprocess import Ranked
from llmrec.experiments.simulation import ClickModel, SimUser, run_session
from llmrec.serving.catalogue_state import LiveItem
from llmrec.serving.history import Event


@dataclass(frozen=True)
class NewItems:
    """New items with their true appeal: ``good`` ones are liked by their ``audience``."""

    items: list[LiveItem]
    good: frozenset[str]
    audience: dict[str, frozenset[str]]
    """Good item -> the users who like it (those who interacted with its twin)."""
    twins: dict[str, str]

    @property
    def bad(self) -> frozenset[str]:
        return frozenset(i.item_id for i in self.items) - self.good


def new_items(
    users: Sequence[SimUser],
    categories: Sequence[str],
    good: int = 5,
    bad: int = 5,
    seed: int = 0,
    audience: tuple[int, int] = (80, 300),
) -> NewItems:
    """``good`` twins of existing items whose audience (users who interacted with them, past
    or future) is within ``audience``, and ``bad`` items nobody likes; all with the same kind
    of uninformative text."""
    rng = np.random.default_rng(seed)
    fans: dict[str, set[str]] = {}
    for u in users:
        for item in (*u.past, *u.future):
            fans.setdefault(item, set()).add(u.user_id)
    low, high = audience
    eligible = sorted(i for i, f in fans.items() if low <= len(f) <= high)
    if len(eligible) < good:
        raise ValueError(f"only {len(eligible)} items have {low}-{high} users; need {good}")
    twins = [str(t) for t in rng.choice(eligible, good, replace=False)]
    items, twin_of, liked_by = [], {}, {}
    for n in range(good + bad):
        item_id = f"new-{seed}-{n}"
        genre = str(rng.choice(list(categories))) if categories else ""
        items.append(LiveItem(item_id, f"New arrival {n}", None, (genre,) if genre else ()))
        if n < good:
            twin_of[item_id] = twins[n]
            liked_by[item_id] = frozenset(fans[twins[n]])
    order = rng.permutation(len(items))  # good and bad interleaved
    return NewItems([items[i] for i in order], frozenset(twin_of), liked_by, twin_of)


@dataclass
class TrafficRun:
    """What one simulated run served and what users did."""

    share: float
    seed: int
    requests: int = 0
    shown: int = 0
    clicks: int = 0
    future_clicks: int = 0
    new_clicks: dict[str, int] = field(default_factory=dict)
    reached: dict[str, int | None] = field(default_factory=dict)
    """Good new item -> requests served until it had been shown to ``reach`` users."""
    slots: list[tuple[int, int, int]] = field(default_factory=list)
    """Per request: (exploration slots, of them on bad new items, on good new items)."""
    impressions: list[Impression] = field(default_factory=list)
    attributed: list[Attributed] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    """The clicks as feedback events (what ``/feedback`` appends for the update job)."""

    @property
    def ctr(self) -> float:
        return self.clicks / self.shown if self.shown else float("nan")

    def windows(self, parts: int, good: bool = False) -> list[float]:
        """Share of exploration slots spent on bad new items (``good``: on good ones) in
        ``parts`` successive windows of requests."""
        column = 2 if good else 1
        out = []
        for chunk in np.array_split(np.array(self.slots).reshape(-1, 3), parts):
            total = int(chunk[:, 0].sum())
            out.append(float(chunk[:, column].sum() / total) if total else float("nan"))
        return out


def serve_traffic(
    ranked: Ranked,
    users: Sequence[SimUser],
    news: NewItems,
    share: float,
    seed: int,
    settings: ExploreSettings | None = None,
    k: int = 10,
    rounds: int = 1,
    appeal: float = 0.5,
    model: ClickModel | None = None,
    reach: int = 100,
    start: int = 1_000_000_000,
    trained: Mapping[str, float] | None = None,
) -> TrafficRun:
    """One simulated run (``seed``: arrival orders, clicks and draws) of every user's sessions,
    ``rounds`` times, each list with ``share`` explored (0: none) out of ``ranked``'s wide
    lists; events are stamped ``start`` + one second per request. ``trained``: the version's
    training interactions per item (:meth:`~llmrec.experiments.inprocess.LocalVersion.
    trained`), added to the log's evidence as the ingress adds them."""
    cfg = settings or ExploreSettings()
    clicks = model or ClickModel()
    rng = np.random.default_rng(seed)
    evidence = ItemEvidence(trained)
    run = TrafficRun(share, seed, reached=dict.fromkeys(sorted(news.good)))
    seen: dict[str, set[str]] = {i: set() for i in news.good}
    bad = news.bad
    shown: dict[str, Impression] = {}
    turn = [0]

    def recommend(user: SimUser, step: int, body: dict) -> tuple[str, Sequence[str]]:
        rid = f"s{seed}-{run.requests}"
        ids, scores = ranked.lists[(user.user_id, step)], ranked.scores[(user.user_id, step)]
        key = explore_key(user.user_id, f"{turn[0]}:{step}", salt=str(seed))
        chosen = explore(scores, k, share, evidence.evidence(ids), key, cfg)
        items = tuple(ids[r] for r in chosen.order)
        imp = Impression(
            rid, float(start + run.requests), "exploration", f"share={share}", ranked.uri,
            ranked.version, user.user_id, "session", None, user.user_id, items, 0.0,
            chosen.explored,
        )  # fmt: skip
        evidence.record([imp])
        shown[rid] = imp
        run.impressions.append(imp)
        run.requests += 1
        run.shown += len(items)
        on = [items[p - 1] for p in chosen.explored]
        run.slots.append((len(on), sum(i in bad for i in on), sum(i in news.good for i in on)))
        for item in news.good.intersection(items):
            seen[item].add(user.user_id)
            if run.reached[item] is None and len(seen[item]) >= reach:
                run.reached[item] = run.requests
        return rid, items

    def feedback(events: list[dict]) -> None:
        pairs = [
            (e["request_id"], Event(e["user_id"], e["item_id"], e["event"], 1.0, None, 0))
            for e in events
        ]
        done = attribute(pairs, shown)
        evidence.record_events(done)
        run.attributed.extend(done)
        for a in done:
            run.events.append(Event(a.user_id, a.item_id, "click", 1.0, None, start + run.requests))
            if a.item_id in news.good or a.item_id in bad:
                run.new_clicks[a.item_id] = run.new_clicks.get(a.item_id, 0) + 1

    for turn[0] in range(rounds):
        for i in rng.permutation(len(users)):
            user = users[i]
            liked = {g: appeal for g in news.good if user.user_id in news.audience[g]}
            result = run_session(user, recommend, feedback, clicks, rng, k, liked=liked)
            run.clicks += result.clicks
            run.future_clicks += result.future_clicks
    return run


def _median_reach(runs: Sequence[TrafficRun]) -> str:
    values = [r for run in runs for r in run.reached.values()]
    done = [v for v in values if v is not None]
    total, requests = len(values), runs[0].requests if runs else 0
    if not done:
        return f"never within {requests:,} requests (0/{total})"
    middle = np.median([v if v is not None else np.inf for v in values])
    text = f"{middle:,.0f}" if np.isfinite(middle) else f"> {requests:,}"
    return f"{text} (median; {len(done)}/{total} reached)"


def _windows(runs: Sequence[TrafficRun], parts: int, good: bool) -> str:
    rows = np.array([run.windows(parts, good) for run in runs])
    if not len(rows) or np.all(np.isnan(rows)):
        return "-"
    return " → ".join(f"{v:.1%}" for v in np.nanmean(rows, axis=0))


def summary(
    without: Sequence[TrafficRun], with_: Sequence[TrafficRun], reach: int = 100, parts: int = 4
) -> list[tuple[str, str, str]]:
    """The table's rows (measure, without exploration, with it), means over the seeds."""
    share = with_[0].share if with_ else 0.0

    def mean(f: str, runs: Sequence[TrafficRun]) -> float:
        return float(np.mean([getattr(r, f) for r in runs]))

    def ctr(runs: Sequence[TrafficRun], future: bool = False) -> float:
        clicks = sum(r.future_clicks if future else r.clicks for r in runs)
        return clicks / max(1, sum(r.shown for r in runs))

    c0, c1, f0, f1 = ctr(without), ctr(with_), ctr(without, True), ctr(with_, True)
    good = len(without[0].reached) if without else 0
    return [
        (f"requests until a good new item was shown to {reach} users", _median_reach(without),
         _median_reach(with_)),
        (f"exploration slots on bad new items ({parts} windows of requests)", "-",
         _windows(with_, parts, False)),
        (f"exploration slots on good new items ({parts} windows)", "-",
         _windows(with_, parts, True)),
        ("CTR (clicks / items shown)", f"{c0:.4f}", f"{c1:.4f} ({c1 / c0 - 1:+.1%})"),
        ("CTR on the users' own future items", f"{f0:.4f}", f"{f1:.4f} ({f1 / f0 - 1:+.1%})"),
        (f"clicks on the {good} good new items per run",
         f"{np.mean([sum(r.new_clicks.get(g, 0) for g in r.reached) for r in without]):.1f}",
         f"{np.mean([sum(r.new_clicks.get(g, 0) for g in r.reached) for r in with_]):.1f}"),
        ("requests per run (share explored)", f"{mean('requests', without):,.0f} (0)",
         f"{mean('requests', with_):,.0f} ({share:g})"),
    ]  # fmt: skip


__all__ = ["NewItems", "TrafficRun", "new_items", "serve_traffic", "summary"]
