"""What ``jobs/evaluate.py`` computes: the protocol table, the re-ranking sweep and the group
report, as printable sections and MLflow artifacts.

Methods are the baselines (popularity, ItemKNN, EASE with lambda tuned on validation,
Markov-1), the hybrid without a language model (``ease+popularity``, when asked for) and,
per registered version, the LLM alone and the platform's hybrid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llmrec.bundle import ModelBundle
from llmrec.config import Config
from llmrec.modeling.cf import CFParams
from llmrec.modeling.towers import Towers
from llmrec.ranking.rerank import SlateSpec
from llmrec.ranking.slate import ItemFacts, Reranker
from llmrec.serving.backends import query_scorer
from llmrec.training import groups as group_stats
from llmrec.training import offline, references, sweep
from llmrec.training.faithfulness import faithfulness
from llmrec.training.metrics import target_ranks, top_k_lists

SWEEP_METHODS = ("hybrid", "llm", "ease", "ease+popularity", "itemknn", "popularity")


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and which sections to add."""

    models: tuple[str, ...] = ()
    lambdas: tuple[float, ...] = (10, 50, 100, 200, 500, 1000)
    cf: tuple[str, ...] = ()
    """CF options listed alone, each tuned on validation (``ease``, ``sparse``, ...)."""
    backends: tuple[str, ...] = ("torch",)
    """How each model's user tower runs: ``torch`` (as trained) and/or ``int8``."""
    rerank_sweep: bool = False
    method: str | None = None
    """The sweep's method (and the group report's base): one of :data:`SWEEP_METHODS`;
    default: the first model's hybrid, or EASE without a model."""
    depths: tuple[int, ...] = (50, 100, 200)
    similarity: str | None = None
    """Item similarity of MMR/MSD/DPP: ``categories`` or ``embedding`` (needs a model)."""
    groups: bool = False
    max_loss: float = 0.05
    explain: bool = False
    """Measure how faithful each model's explanations are (:mod:`faithfulness`)."""


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
    load_model: Callable[[str], tuple[str, ModelBundle]] | None = None,
    log: Callable[[str], None] = print,
) -> Evaluation:
    """Every method on validation and test, and the sections ``opts`` asks for.

    Args:
        cfg: The config (``rank.cf``, ``rank.similarity``).
        protocol: The split and its catalogue.
        opts: What to evaluate.
        users: The user table (``user_id`` + attributes) for the group report.
        load_model: URI -> (``name/version``, the version's bundle).
        log: Where progress lines go.
    """
    best, tried = offline.tune_ease(protocol, opts.lambdas)
    log(
        "EASE validation NDCG@10 by lambda: "
        + ", ".join(f"{k:g}: {v:.4f}" for k, v in tried.items())
    )
    ease = CFParams(ease_lambda=best)
    scored = references.reference_scores(
        protocol,
        cfg.rank,
        offline.cf_label("ease", ease),
        references.fit_cf_models(protocol, "ease", ease),
    )
    names: list[str] = []
    embeddings = None
    explained: list[str] = []
    for uri in opts.models:
        assert load_model is not None
        name, bundle = load_model(uri)
        towers = bundle.load_towers()
        items = offline.catalogue_vectors(
            towers, bundle.catalogue.ids, bundle.item_embeddings, protocol
        )
        if embeddings is None:  # diversity over the first model's vectors without categories
            protocol = protocol.with_item_vectors(items, name)
            embeddings = items
        for backend in opts.backends:
            label = name if backend == "torch" else f"{name} {backend}"
            _add_model(cfg, protocol, opts, label, towers, backend, items, scored, log)
        names.append(name)
        if opts.explain:
            found = faithfulness(bundle, protocol, protocol.scored(protocol.part("test")))
            explained.append(found.table(name))
            log(f"faithfulness of {name}: explained / random rank drop {found.ratio:.2f}x")
    if opts.method == "ease+popularity":
        weights, scored["ease + popularity"] = offline.ease_popularity(protocol, best)
        log(f"ease + popularity tuned on validation: {weights.describe()}")
    table = offline.score_table(protocol, scored)
    if opts.cf:
        table = pd.concat(
            [table, offline.cf_table(protocol, list(opts.cf), cfg.rank, opts.lambdas)],
            ignore_index=True,
        )
    order = {"val": 0, "test": 1, "test_cold": 2}
    table = table.sort_values(
        ["split", "method"], key=lambda c: c.map(order) if c.name == "split" else c, kind="stable"
    )
    basis = protocol.diversity_basis
    if protocol.diversity_vectors is None:
        basis = f"n/a, {basis} (with --model URI it is measured on that model's item embeddings)"
    else:
        basis = f"intra-list diversity of the top-10 over {basis}"
    out = Evaluation(
        table, [offline.to_markdown(table)], params={"ease_lambda": best, "diversity": basis}
    )
    models = {m: m for m in scored if m.startswith(("llm ", "hybrid "))}
    compared = offline.to_markdown(references.comparison(table, models))
    out.sections.append(
        "## Beside the baselines (test NDCG@10 as a multiple of the strongest baseline's)\n\n"
        + compared
    )
    out.texts["evaluation/comparison.md"] = compared
    for n, md in enumerate(explained):
        out.sections.append(md)
        out.texts[f"evaluation/faithfulness_{n}.md"] = md
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
        test = protocol.scored(protocol.part("test"))
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
    label: str,
    towers: Towers,
    backend: str,
    items: np.ndarray,
    scored: dict[str, dict[str, np.ndarray]],
    log: Callable[[str], None],
) -> None:
    """Add a version's ``llm`` (its own user and item vectors) and ``hybrid`` scores to
    ``scored``, its user tower's language model run on ``backend``."""
    trained = towers.scorer
    towers.use_scorer(query_scorer(trained, backend))
    parts = {p: protocol.scored(protocol.part(p)) for p in ("val", "test")}
    queries = {p: offline.user_vectors(towers, part) for p, part in parts.items()}
    towers.use_scorer(trained)
    fit = offline.fit_hybrid(protocol, items, queries["val"], cfg.rank.cf, opts.lambdas, cfg.rank)
    log(
        f"{label} hybrid tuned on validation: {fit.weights.describe()}, "
        f"cf {offline.cf_label(fit.cf, fit.cf_params)}"
    )
    scored[f"llm {label}"] = {p: queries[p] @ items.T for p in parts}
    scored[f"hybrid {label}"] = {
        p: fit.scorers[p].scores(queries[p], part.histories, requests=offline.requests_of(part))
        for p, part in parts.items()
    }


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
    test = protocol.scored(protocol.part("test"))
    facts = ItemFacts.build(protocol.catalogue, vectors, test.counts(n))
    frames = [
        sweep.run(
            protocol, protocol.scored(protocol.part(p)), scores[p], facts, opts.depths
        ).assign(split=p)
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
    test = protocol.scored(protocol.part("test"))
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
