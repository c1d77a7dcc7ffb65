"""The re-ranking sweep's plots: NDCG@10 against each objective, validation beside test."""

from __future__ import annotations

from typing import Any

import pandas as pd

from llmrec.evaluation.sweep import FAMILIES, OBJECTIVES


def figures(
    sweep: pd.DataFrame, picked: dict[str, pd.Series], max_loss: float = 0.05
) -> dict[str, Any]:
    """One figure per objective: NDCG@10 against the measure for the re-rankers that serve
    it (a colour each, a line style per depth), validation and test side by side; the
    un-re-ranked lists as a black dot, the NDCG budget (``max_loss``) dashed, each re-ranker's
    validation-chosen setting circled in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    styles = ("-", "--", ":", "-.")
    for objective, (label, _) in OBJECTIVES.items():
        names = [f.name for f in FAMILIES if f.objective == objective]
        if not set(names) & set(sweep["reranker"]):  # e.g. calibration without categories
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, split in zip(axes, ("val", "test"), strict=True):
            part = sweep[sweep["split"] == split]
            base = part[part["reranker"] == "none"].iloc[0]
            depths = sorted(set(part.loc[part["reranker"] != "none", "depth"]))
            for i, name in enumerate(names):
                for depth in depths:
                    rows = part[(part["reranker"] == name) & (part["depth"] == depth)]
                    if rows.empty:
                        continue
                    rows = pd.concat([base.to_frame().T, rows])
                    ax.plot(
                        rows[objective],
                        rows["ndcg_at_10"],
                        color=f"C{i}",
                        linestyle=styles[depths.index(depth) % len(styles)],
                        marker=".",
                        markersize=4,
                        label=f"{name} @{depth}",
                    )
                    chosen = picked.get(name)
                    if chosen is not None and chosen["depth"] == depth:
                        at = rows[rows["knob"] == chosen["knob"]].iloc[-1:]
                        ax.scatter(
                            at[objective], at["ndcg_at_10"], s=140, facecolors="none",
                            edgecolors="red", zorder=4,
                        )  # fmt: skip
            ax.scatter([base[objective]], [base["ndcg_at_10"]], color="k", zorder=5)
            ax.axhline(
                (1 - max_loss) * base["ndcg_at_10"], color="grey", linestyle="--", linewidth=0.8
            )
            ax.set(title=f"{split}: NDCG@10 vs {label}", xlabel=label, ylabel="NDCG@10")
            ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        out[f"plots/rerank_{objective}.png"] = fig
    return out
