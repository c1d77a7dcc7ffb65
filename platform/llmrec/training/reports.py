"""What ``jobs/evaluate.py`` computes: the protocol table, the re-ranking sweep and the group
report, as printable sections and MLflow artifacts.

Methods are the baselines (popularity, ItemKNN, EASE with lambda tuned on validation), the
hybrid without a language model (``ease+popularity``, when asked for) and, per registered
version, the LLM alone and the platform's hybrid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llmrec.config import Config
from llmrec.ranking.rerank import SlateSpec
from llmrec.ranking.slate import ItemFacts, Reranker
from llmrec.training import groups as group_stats
from llmrec.training import offline, sweep
from llmrec.training.metrics import target_ranks, top_k_lists

SWEEP_METHODS = ("hybrid", "llm", "ease", "ease+popularity", "itemknn", "popularity")


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and which sections to add."""

    models: tuple[str, ...] = ()
    lambdas: tuple[float, ...] = (10, 50, 100, 200, 500, 1000)
    rerank_sweep: bool = False
    method: str | None = None
    """The sweep's method (and the group report's base): one of :data:`SWEEP_METHODS`;
    default: the first model's hybrid, or EASE without a model."""
    depths: tuple[int, ...] = (50, 100, 200)
    similarity: str | None = None
    """Item similarity of MMR/MSD/DPP: ``categories`` or ``embedding`` (needs a model)."""
    groups: bool = False
    max_loss: float = 0.05


@dataclass
class Evaluation:
    """The table, the printed sections, and what goes to MLflow."""

    table: pd.DataFrame
    sections: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def method_label(opts: EvalOptions, scored: dict[str, Any], model_names: list[str]) -> str:
    """The label in ``scored`` of the sweep's method.

    Raises:
        ValueError: the method needs a model and none was given, or is unknown.
    """
    method = opts.method or ("hybrid" if model_names else "ease")
    if method in ("hybrid", "llm"):
        if not model_names:
            raise ValueError(f"--method {method} needs --model URI")
        return f"{method} {model_names[0]}"
    if method == "ease":
        return next(label for label in scored if label.startswith("ease ("))
    if method == "ease+popularity":
        return "ease + popularity"
    if method in scored:
        return method
    raise ValueError(f"unknown method {method!r} (one of {', '.join(SWEEP_METHODS)})")


def evaluate_all(
    cfg: Config,
    protocol: offline.Protocol,
    opts: EvalOptions,
    users: pd.DataFrame | None = None,
    load_model: Callable[[str], tuple[str, Any, int]] | None = None,
    log: Callable[[str], None] = print,
) -> Evaluation:
    """Every method on validation and test, and the sections ``opts`` asks for.

    Args:
        cfg: The config (``rank.cf``, ``rank.similarity``).
        protocol: The split and its catalogue.
        opts: What to evaluate.
        users: The user table (``user_id`` + attributes) for the group report.
        load_model: URI -> (``name/version``, scorer, ``data.max_history``).
        log: Where progress lines go.
    """
    best, tried = offline.tune_ease(protocol, opts.lambdas)
    log(
        "EASE validation NDCG@10 by lambda: "
        + ", ".join(f"{k:g}: {v:.4f}" for k, v in tried.items())
    )
    scored = offline.baseline_scores(protocol, best)
    names: list[str] = []
    embeddings = None
    for uri in opts.models:
        assert load_model is not None
        name, items = _add_model(cfg, protocol, opts, load_model(uri), scored, log)
        names.append(name)
        embeddings = items if embeddings is None else embeddings
    if opts.method == "ease+popularity":
        weights, scored["ease + popularity"] = offline.ease_popularity(protocol, best)
        log(f"ease + popularity tuned on validation: {weights.describe()}")
    table = offline.score_table(protocol, scored)
    order = {"val": 0, "test": 1, "test_cold": 2}
    table = table.sort_values(
        ["split", "method"], key=lambda c: c.map(order) if c.name == "split" else c, kind="stable"
    )
    out = Evaluation(table, [offline.to_markdown(table)], params={"ease_lambda": best})
    lists: dict[str, np.ndarray] = {}
    base = None
    if opts.rerank_sweep or (opts.groups and opts.method):
        base = method_label(opts, scored, names)
    if opts.rerank_sweep:
        assert base is not None
        similarity = opts.similarity or cfg.rank.similarity
        if similarity == "embedding" and embeddings is None:
            log("no model: MMR/MSD/DPP use category vectors as item similarity")
            similarity = "categories"
        vectors = protocol.category_vectors() if similarity == "categories" else embeddings
        lists = _sweep_section(protocol, opts, scored[base], base, vectors, similarity, out)
    if opts.groups:
        test = protocol.part("test")
        ranks = {
            m: target_ranks(s["test"], test.targets, test.histories) for m, s in scored.items()
        }
        ranks |= {m: sweep.list_ranks(top, test.targets) for m, top in lists.items()}
        compare = [m for m in lists if m != base]
        md, gaps = group_section(protocol, users, ranks, base, compare)
        out.sections.append(md)
        out.texts["evaluation/groups.md"] = md
        out.texts["evaluation/group_gaps.csv"] = gaps.to_csv(index=False)
    return out


def _add_model(
    cfg: Config,
    protocol: offline.Protocol,
    opts: EvalOptions,
    loaded: tuple[str, Any, int],
    scored: dict[str, dict[str, np.ndarray]],
    log: Callable[[str], None],
) -> tuple[str, np.ndarray]:
    """Add a version's ``llm`` and ``hybrid`` scores to ``scored``; return its name and
    item embeddings."""
    name, scorer, max_history = loaded
    items = scorer.encode(protocol.catalogue.texts(), kind="item").numpy()
    parts = {p: protocol.part(p) for p in ("val", "test")}
    queries = {
        p: offline.llm_queries(scorer, protocol, part, max_history) for p, part in parts.items()
    }
    fit = offline.fit_hybrid(protocol, items, queries["val"], cfg.rank.cf, opts.lambdas)
    log(f"{name} hybrid tuned on validation: {fit.weights.describe()}")
    scored[f"llm {name}"] = {p: queries[p] @ items.T for p in parts}
    scored[f"hybrid {name}"] = {
        p: fit.scorers[p].scores(queries[p], part.histories) for p, part in parts.items()
    }
    return name, items


def _sweep_section(
    protocol: offline.Protocol,
    opts: EvalOptions,
    scores: dict[str, np.ndarray],
    base: str,
    vectors: Any,
    similarity: str,
    out: Evaluation,
) -> dict[str, np.ndarray]:
    """Run the sweep, add its table, verdicts, exposure table and plots to ``out``; return
    the test lists of each re-ranker at its validation-chosen setting, by label."""
    n = len(protocol.catalogue)
    test = protocol.part("test")
    facts = ItemFacts.build(protocol.catalogue, vectors, test.counts(n))
    frames = [
        sweep.run(protocol, protocol.part(p), scores[p], facts, opts.depths).assign(split=p)
        for p in ("val", "test")
    ]
    result = pd.concat(frames, ignore_index=True)
    summary, picked = sweep.summary(result, opts.depths, opts.max_loss)
    lists = {base: top_k_lists(scores["test"], test.histories, 10)}
    reranker = Reranker(facts.with_tail(test.counts(n)))
    for name, row in picked.items():
        if row["reranker"] == "none":
            continue
        spec: SlateSpec = sweep.family(name).spec(row["knob"])
        pool = sweep.pool(test, scores["test"], int(row["depth"]))
        label = f"{base} + {name} {row['knob']:g} @{int(row['depth'])}"
        lists[label] = sweep.reranked_lists(test, pool, reranker, spec)
    exposure = sweep.exposure_table(lists, facts)
    md = (
        f"## Re-ranking sweep: {base}, top-10 re-ranked from the top "
        f"{'/'.join(map(str, opts.depths))} (similarity: {similarity}; knob chosen on "
        f"validation within {100 * opts.max_loss:g}% of its NDCG@10)\n\n"
        + offline.to_markdown(summary)
        + "\n\n"
        + "\n".join(f"- {line}" for line in sweep.verdicts(result, opts.max_loss))
        + "\n\n### Exposure per category (test, share of list slots)\n\n"
        + offline.to_markdown(exposure)
    )
    out.sections.append(md)
    out.texts |= {
        "evaluation/rerank_sweep.md": md,
        "evaluation/rerank_sweep.csv": result.to_csv(index=False),
        "evaluation/exposure_by_category.csv": exposure.to_csv(index=False),
    }
    out.figures |= sweep.figures(result, picked)
    return lists


def group_section(
    protocol: offline.Protocol,
    users: pd.DataFrame | None,
    ranks: dict[str, np.ndarray],
    base: str | None = None,
    compare: Sequence[str] = (),
    min_users: int = 20,
) -> tuple[str, pd.DataFrame]:
    """The group report of test ranks per method, as Markdown, and its gap table
    (``compare``: methods whose gaps are measured against ``base``'s)."""
    test = protocol.part("test")
    labels, skipped = group_stats.user_groups(
        test.rows["user_id"].tolist(), [len(h) for h in test.histories], users
    )
    report = group_stats.group_report(labels, ranks, base, compare, min_users)
    gaps = group_stats.gap_table(report)
    significant = report.gaps[report.gaps["significant"]] if not report.gaps.empty else []
    lines = [
        "## Quality across user groups (test split)",
        "",
        "Activity = quartile of history length"
        + (", and the user table's attributes" if users is not None else " (no user table)")
        + (f"; left out: {', '.join(skipped)}" if skipped else "")
        + f". Gaps between groups of at least {min_users} users; 95% bootstrap interval; "
        "significant = permutation p < 0.05.",
        "",
        "### NDCG@10",
        "",
        offline.to_markdown(group_stats.wide_group_table(report, "ndcg_at_10")),
        "",
        "### HR@10",
        "",
        offline.to_markdown(group_stats.wide_group_table(report, "hr_at_10")),
        "",
        "### Largest gap per attribute",
        "",
        offline.to_markdown(gaps) if not gaps.empty else "(no attribute with two groups)",
        "",
        f"Significant gaps: {len(significant)} of {len(report.gaps)}.",
    ]
    return "\n".join(lines), report.gaps


def users_frame(table: Any) -> pd.DataFrame | None:
    """The prepared user table as a DataFrame of strings (None when there is none)."""
    if table is None:
        return None
    return pd.DataFrame(
        {
            c: [None if v is None else str(v) for v in table.column(c).to_pylist()]
            for c in table.column_names
        }
    )


def fmt_sections(sections: Sequence[str]) -> str:
    return "\n\n".join(sections)
