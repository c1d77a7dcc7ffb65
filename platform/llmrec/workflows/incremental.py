"""How much an update costs, and what it buys: the incremental protocol
(``jobs/evaluate.py --incremental``, ``docs/updates.md``).

All interactions on one timeline: the first ``base_share`` is the base period, the rest is
cut into ``periods`` equal periods. For each period, each strategy has a model made from the
data before it, evaluated on the period: each user active there is scored for their first
interaction in it, from everything before, ranking every item seen up to the end of the
period (the new ones by their text alone where a model never trained on them), history
masked. Strategies:

- ``stale``: the base model, never updated;
- ``new only``: the previous period's model fine-tuned on the last period's interactions;
- ``replay``: the same with ``update.replay_ratio`` windows of older interactions replayed
  per new window (what ``jobs/update.py`` does);
- ``retrain``: trained from the base model's starting point on everything before the period.

Fine-tunes run ``update.epochs`` epochs and keep the last; full trainings run up to
``train.epochs`` with ``train.patience``, keeping the best epoch on a validation target per
user (their last interaction before the period, left out of that training). The sequential
design is trained in this process with the library's :class:`SequenceObjective` (the
objective and settings Ray Train runs; the global batch is ``train.batch_size`` x
``train.num_workers``, on ``num_workers x torch_threads`` threads), so that training seconds
compare strategies without Ray's start-up.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmrec.config import Config
from llmrec.data.catalogue import Catalogue
from llmrec.evaluation.incremental import PeriodUsers, Timeline, period_metrics, period_users
from llmrec.evaluation.incremental import replay as replay_windows
from llmrec.evaluation.incremental import windows as span_windows
from llmrec.training.designs import sequence_inputs, user_eval_set
from llmrec.training.sequential import (
    SequenceEvalSet,
    SequenceObjective,
    evaluate_sequential,
    load_state,
    optimizer_for,
    trained_state,
)

STRATEGIES = ("stale", "new only", "replay", "retrain")
State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Trained:
    """A model's tensors, the items it trained on and what making it cost."""

    state: State
    known: np.ndarray
    seconds: float
    epochs: int


class Lab:
    """The timeline, the catalogue's text embeddings and the training loop, once."""

    def __init__(self, cfg: Config, timeline: Timeline, catalogue: Catalogue) -> None:
        self.cfg = cfg
        self.timeline = timeline
        self.catalogue = catalogue
        self.rows = catalogue.index
        self.threads = cfg.train.num_workers * cfg.train.torch_threads
        torch.set_num_threads(self.threads)
        queries = timeline.queries(0, len(timeline))
        self.query_ids = {q: k + 1 for k, q in enumerate(queries)}
        known = np.ones(len(catalogue), dtype=bool)
        self.base, self.inputs = sequence_inputs(cfg, catalogue, queries, known)
        self.first_seen = timeline.first_seen()

    def known_before(self, end: int) -> np.ndarray:
        return np.array(
            [self.first_seen.get(i, len(self.timeline)) < end for i in self.catalogue.ids]
        )

    def objective(self, known: np.ndarray, train_cfg: Any) -> SequenceObjective:
        inputs = dataclasses.replace(self.inputs, known=known)
        torch.manual_seed(train_cfg.seed)
        return SequenceObjective(self.cfg.model, train_cfg, inputs)

    def windows(
        self, start: int, end: int, timeline: Timeline | None = None
    ) -> list[dict[str, Any]]:
        tl = timeline or self.timeline
        return span_windows(tl, self.rows, self.query_ids, self.cfg.model.seq_len, start, end)

    def fit(
        self,
        windows: list[dict[str, Any]],
        known: np.ndarray,
        init: State | None,
        epochs: int,
        lr: float,
        val: SequenceEvalSet | None = None,
    ) -> Trained:
        """Train on ``windows`` (from ``init``): the best epoch on ``val`` with
        ``train.patience``, or the last one without ``val``."""
        t = self.cfg.train
        train_cfg = dataclasses.replace(t, lr=lr, batch_size=t.batch_size * t.num_workers)
        objective = self.objective(known, train_cfg)
        if init is not None:
            load_state(objective, init)
        optimizer = optimizer_for(objective, train_cfg)
        rng = np.random.default_rng(t.seed)
        best, best_value, bad, done = trained_state(objective), -1.0, 0, 0
        start = time.perf_counter()
        for _ in range(epochs):
            done += 1
            objective.train()
            order = rng.permutation(len(windows))
            for b in range(0, len(order), train_cfg.batch_size):
                part = [windows[i] for i in order[b : b + train_cfg.batch_size]]
                loss = objective(
                    [w["items"].tolist() for w in part],
                    [w["queries"].tolist() for w in part],
                    None,
                    [int(w["first"]) for w in part],
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if val is None:
                continue
            value = evaluate_sequential(objective, val)["ndcg_at_10"]
            if value > best_value:
                best, best_value, bad = trained_state(objective), value, 0
            else:
                bad += 1
                if 0 < t.patience <= bad:
                    break
        if val is None:
            best = trained_state(objective)
        return Trained(best, known, time.perf_counter() - start, done)

    def full(self, end: int) -> Trained:
        """Trained from scratch on everything before ``end``; each user's last interaction
        there is the validation target that picks the epoch."""
        frame = self.timeline.frame.iloc[:end]
        counts = frame.groupby("user_id")["pos"].transform("size")
        last = frame.groupby("user_id")["pos"].transform("max")
        val_pos = set(frame["pos"][(frame["pos"] == last) & (counts >= 3)])
        rest = Timeline(frame[~frame["pos"].isin(val_pos)].reset_index(drop=True))
        users = _targets_at(self.timeline, self.rows, val_pos)
        known = self.known_before(end)
        candidates = np.flatnonzero(known)
        val = user_eval_set(users.histories, users.targets, users.queries, candidates, self.base)
        t = self.cfg.train
        return self.fit(self.windows(0, end, rest), known, None, t.epochs, t.lr, val)

    def fine_tune(self, model: Trained, start: int, end: int, replay: float) -> Trained:
        """``model`` fine-tuned on the interactions in ``[start, end)`` and ``replay``
        windows of older ones per new window."""
        new = self.windows(start, end)
        count = round(replay * len(new))
        seq = self.cfg.model.seq_len
        old = replay_windows(self.timeline, self.rows, self.query_ids, seq, start, count, 0)
        u = self.cfg.update
        return self.fit(
            new + old, self.known_before(end), model.state, u.epochs, u.lr or self.cfg.train.lr
        )

    def evaluate(self, model: Trained, start: int, end: int, base_end: int) -> dict[str, float]:
        users = period_users(self.timeline, self.rows, start, end, base_end)
        candidates = np.flatnonzero(self.known_before(end))
        objective = self.objective(model.known, self.cfg.train)
        load_state(objective, model.state)
        val = user_eval_set(users.histories, users.targets, users.queries, candidates, self.base)
        scores = _scores(objective, val, len(self.catalogue))
        return period_metrics(scores, users, candidates)


def run(
    cfg: Config,
    timeline: Timeline,
    catalogue: Catalogue,
    periods: int = 3,
    base_share: float = 0.7,
    log: Callable[[str], Any] = print,
) -> pd.DataFrame:
    """The incremental table: one row per period and strategy (``method``: the strategy,
    ``split``: ``period_k``), then each strategy's means (``split``: ``mean``, and
    ``mean_updated``: the periods after the first, where the strategies differ)."""
    lab = Lab(cfg, timeline, catalogue)
    base_end = timeline.share(base_share)
    bounds = [
        base_end + round(k * (len(timeline) - base_end) / periods) for k in range(periods + 1)
    ]
    log(f"base period: {base_end} interactions; {periods} periods of ~{bounds[1] - bounds[0]}")
    stale = lab.full(base_end)
    log(f"base model: {stale.epochs} epochs, {stale.seconds:.0f} s")
    models = {s: stale for s in STRATEGIES}
    rows = []
    for p in range(periods):
        start, end = bounds[p], bounds[p + 1]
        spent = dict.fromkeys(STRATEGIES, 0.0)
        if p > 0:
            prev = bounds[p - 1]
            models["new only"] = lab.fine_tune(models["new only"], prev, start, 0.0)
            models["replay"] = lab.fine_tune(models["replay"], prev, start, cfg.update.replay_ratio)
            models["retrain"] = lab.full(start)
            spent = {s: (models[s].seconds if s != "stale" else 0.0) for s in STRATEGIES}
        for s in STRATEGIES:
            m = lab.evaluate(models[s], start, end, base_end)
            rows.append({"method": s, "split": f"period_{p + 1}", **_columns(m, spent[s])})
            log(f"period {p + 1}, {s}: NDCG@10 {m['ndcg_at_10']:.4f}, trained {spent[s]:.0f} s")
    table = pd.DataFrame(rows)
    means = []
    for label, chosen in (("mean", table), ("mean_updated", table[table["split"] != "period_1"])):
        for s in STRATEGIES:
            part = chosen[chosen["method"] == s].drop(columns=["method", "split"])
            means.append({"method": s, "split": label, **part.mean(numeric_only=True).to_dict()})
    return pd.concat([table, pd.DataFrame(means)], ignore_index=True)


def _columns(m: dict[str, float], seconds: float) -> dict[str, float]:
    return {
        "users": m["users"],
        "ndcg_at_10": m["ndcg_at_10"],
        "hr_at_10": m["hr_at_10"],
        "train_seconds": seconds,
        "returning_ndcg_at_10": m["returning_ndcg_at_10"],
        "new_ndcg_at_10": m["new_ndcg_at_10"],
        "new_users": m["new_users"],
    }


def _targets_at(timeline: Timeline, rows: dict[str, int], positions: set[int]) -> PeriodUsers:
    """The users whose interaction at one of ``positions`` is the target."""
    frame = timeline.frame
    users, hist, ids, targets, queries = [], [], [], [], []
    for user, seq in timeline.users.items():
        at = [k for k, p in enumerate(seq["pos"]) if p in positions]
        if not at or seq["items"][at[0]] not in rows:
            continue
        before = [i for i in seq["items"][: at[0]] if i in rows]
        users.append(user)
        ids.append(before)
        hist.append([rows[i] for i in before])
        targets.append(rows[seq["items"][at[0]]])
        queries.append(seq["queries"][at[0]])
    del frame
    n = len(users)
    return PeriodUsers(
        users, hist, ids, np.asarray(targets, dtype=np.int64), queries, np.ones(n, bool)
    )


def _scores(objective: SequenceObjective, data: SequenceEvalSet, n: int) -> np.ndarray:
    """``[users, catalogue]`` scores (rows outside ``data.candidates`` at -inf)."""
    from llmrec.modeling.towers import user_vectors

    objective.eval()
    with torch.no_grad():
        vectors = objective.item_vectors()
        query = torch.as_tensor(np.asarray(data.query_text, dtype=np.float32))
        has = torch.tensor([q is not None for q in data.queries])
        users = user_vectors(objective.model, vectors, data.histories, query, has)
        return (users @ vectors.T).numpy()


def plot(table: pd.DataFrame) -> Any:
    """NDCG@10 per period, one line per strategy (a matplotlib figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    periods = table[table["split"].str.startswith("period_")]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for s in STRATEGIES:
        part = periods[periods["method"] == s]
        ax.plot(
            [int(x.split("_")[1]) for x in part["split"]], part["ndcg_at_10"], marker="o", label=s
        )
    ax.set(xlabel="period", ylabel="NDCG@10", title="incremental protocol")
    ax.legend()
    fig.tight_layout()
    return fig


def main(cfg: Config, source: str, periods: int, log_to_mlflow: bool = True) -> int:
    """``jobs/evaluate.py --incremental``: read ``source``, keep its ``data.min_core``-core
    (as the leave-one-out protocol does), run the protocol, print and log the table."""
    import tempfile

    from llmrec.data.prepare import load_source, prepare
    from llmrec.data.splits import k_core
    from llmrec.evaluation.offline import to_markdown
    from llmrec.registry import runs

    if periods < 1:
        raise ValueError(f"--periods must be >= 1, got {periods}")
    prepared = prepare(
        load_source(source, cfg.data), tempfile.mkdtemp(prefix="llmrec-inc-"), cfg.data.events
    )
    frame = k_core(prepared.interactions.to_pandas(), cfg.data.min_core)
    timeline = Timeline.build(frame)
    catalogue = prepared.catalogue.subset(set(frame["item_id"]))
    print(
        f"{source}: {len(timeline)} interactions, {frame['user_id'].nunique()} users, "
        f"{len(catalogue)} items after {cfg.data.min_core}-core"
    )
    table = run(cfg, timeline, catalogue, periods)
    markdown = to_markdown(table)
    note = (
        "\n\nModels trained in-process with the library's SequenceObjective (the objective "
        f"and settings Ray Train runs), {cfg.train.num_workers * cfg.train.torch_threads} "
        "threads; train_seconds: what producing that period's model cost (0: no training)."
    )
    print("\n" + markdown + note)
    if log_to_mlflow:
        params = {"data": source, "periods": periods, **cfg.flat()}
        figures = {"plots/incremental_ndcg.png": plot(table)}
        run_id = runs.log_evaluation(
            cfg.registry,
            table,
            markdown + note,
            params,
            {"evaluation/incremental.md": markdown + note},
            figures,
        )
        print(f"\nlogged to MLflow run {run_id}")
    return 0


__all__ = ["STRATEGIES", "Lab", "Trained", "main", "plot", "run"]
