"""The re-ranking sweep's section of an evaluation: the table, the verdicts, the selection
rules side by side, the exposure per category and the plots (``jobs/evaluate.py
--rerank-sweep``; docs/beyond-accuracy.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llmrec.evaluation import offline, sweep
from llmrec.evaluation.metrics import top_k_lists
from llmrec.evaluation.selection import DEFAULT, RULES, Rule
from llmrec.evaluation.sweep_plots import figures
from llmrec.ranking.slate import ItemFacts, Reranker


@dataclass
class SweepSection:
    """What the sweep adds to an evaluation.

    Attributes:
        markdown: The printed section.
        texts: Artifact path -> text (the table, the full sweep as CSV, the exposure).
        figures: Artifact path -> matplotlib figure.
        lists: Label -> ``[test users, 10]`` item rows: the method's own top-10 and each
            re-ranker's at its validation-chosen setting (for the group report).
    """

    markdown: str
    texts: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, np.ndarray] = field(default_factory=dict)


def sweep_section(
    protocol: offline.Protocol,
    scores: dict[str, np.ndarray],
    base: str,
    vectors: np.ndarray | None,
    similarity: str,
    depths: Sequence[int],
    max_loss: float = 0.05,
    rule: Rule = DEFAULT,
) -> SweepSection:
    """Run the sweep on the method ``base``'s ``scores`` (``val``, ``test``) with
    ``vectors`` as item similarity, and build its section: knobs chosen under ``rule``,
    every rule of :data:`~llmrec.evaluation.selection.RULES` compared.

    Raises:
        ValueError: no similarity vectors (``embedding`` similarity without a model).
    """
    if vectors is None:
        raise ValueError(f"similarity {similarity!r}: no item vectors to compare items by")
    n = len(protocol.catalogue)
    test = protocol.scored(protocol.part("test"))
    facts = ItemFacts.build(protocol.catalogue, vectors, test.counts(n))
    rules = tuple(dict.fromkeys([*RULES, rule]))
    frames = [
        sweep.run(
            protocol, protocol.scored(protocol.part(p)), scores[p], facts, depths, rules=rules
        ).assign(split=p)
        for p in ("val", "test")
    ]
    result = pd.concat(frames, ignore_index=True)
    summary, picked = sweep.summary(result, depths, max_loss, rule)
    lists = {base: top_k_lists(scores["test"], test.histories, 10)}
    reranker = Reranker(facts.with_tail(test.counts(n)))
    for name, row in picked.items():
        if row["reranker"] == "none":
            continue
        spec = sweep.family(name).spec(row["knob"])
        pool = sweep.pool(test, scores["test"], int(row["depth"]))
        label = f"{base} + {name} {row['knob']:g} @{int(row['depth'])}"
        lists[label] = sweep.reranked_lists(test, pool, reranker, spec)
    exposure = sweep.exposure_table(lists, facts)
    compared = sweep.compare_rules(result, rules, max_loss)
    md = (
        f"## Re-ranking sweep: {base}, top-10 re-ranked from the top "
        f"{'/'.join(map(str, depths))} (similarity: {similarity}; knob chosen on "
        f"validation within {100 * max_loss:g}% of its NDCG@10, rule: {rule.label})\n\n"
        + offline.to_markdown(summary)
        + "\n\n"
        + "\n".join(f"- {line}" for line in sweep.verdicts(result, max_loss, rule))
        + "\n\n### Selection rules compared (knob chosen on validation; test loss of "
        + f"NDCG@10 against the {100 * max_loss:g}% budget)\n\n"
        + offline.to_markdown(compared)
        + (
            "\n\n### Exposure per category (test, share of list slots)\n\n"
            + offline.to_markdown(exposure)
            if len(exposure)
            else "\n\nExposure per category: the items have no categories."
        )
    )
    texts = {
        "evaluation/rerank_sweep.md": md,
        "evaluation/rerank_sweep.csv": result.to_csv(index=False),
        "evaluation/rerank_rules.csv": compared.to_csv(index=False),
        "evaluation/exposure_by_category.csv": exposure.to_csv(index=False),
    }
    return SweepSection(md, texts, figures(result, picked, max_loss), lists)
