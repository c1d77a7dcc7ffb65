"""What ``jobs/evaluate.py`` computes: the protocol table, the re-ranking sweep and the group
report, as printable sections and MLflow artifacts (the sweep's section is built in
:mod:`llmrec.evaluation.rerank_report`, the group report's in
:mod:`llmrec.evaluation.group_report`).

Methods are the baselines (popularity, ItemKNN, EASE with lambda tuned on validation,
Markov-1; each in the form the catalogue's size allows, :func:`references.size_rules`), the
hybrid without a language model (``ease+popularity``, when asked for), per registered
version the LLM alone and the platform's hybrid, and any other model's predictions read from
a file (:mod:`llmrec.evaluation.predictions`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llmrec.config import Config
from llmrec.evaluation import offline, references, sweep, tuning
from llmrec.evaluation.faithfulness import faithfulness
from llmrec.evaluation.group_report import group_section
from llmrec.evaluation.metrics import target_ranks
from llmrec.evaluation.predictions import Predictions, missing_column, score_predictions
from llmrec.evaluation.rerank_report import sweep_section
from llmrec.evaluation.selection import DEFAULT, Rule
from llmrec.modeling.cf import CFParams
from llmrec.modeling.towers import Towers
from llmrec.registry.bundle import ModelBundle
from llmrec.serving.backends import query_scorer

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
    selection: Rule = DEFAULT
    """How the sweep charges a knob its validation NDCG loss (:mod:`selection`)."""
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


def method_label(
    opts: EvalOptions,
    scored: dict[str, Any],
    model_names: list[str],
    aliases: dict[str, str | None] | None = None,
) -> str:
    """The label in ``scored`` of the sweep's method (``aliases``: a method -> its label on
    this catalogue, None when it was skipped, e.g. ``ease`` -> ``sparse ease (...)``).

    Raises:
        ValueError: the method needs a model and none was given, was skipped, or is unknown.
    """
    method = opts.method or ("hybrid" if model_names else "ease")
    if method in ("hybrid", "llm"):
        if not model_names:
            raise ValueError(f"--method {method} needs --model URI")
        return f"{method} {model_names[0]}"
    if aliases and method in aliases:
        label = aliases[method]
        if label is None or label not in scored:
            raise ValueError(f"--method {method}: skipped on this catalogue (see above why)")
        return label
    if method == "ease":
        return next(label for label in scored if label.startswith("ease ("))
    if method == "ease+popularity":
        return "ease + popularity"
    if method in scored:
        return method
    raise ValueError(f"unknown method {method!r} (one of {', '.join(SWEEP_METHODS)})")


def memory_note(protocol: offline.Protocol, opts: EvalOptions, available: int | None) -> str:
    """A line when the score matrices of the scored users would take more than half the
    memory available ("" otherwise), with the ``--max-users`` that keeps them within it."""
    n = len(protocol.catalogue)
    users = len(protocol.scored(protocol.part("test")).targets)
    methods = 4 + 2 * len(opts.models) * len(opts.backends)
    methods += int(opts.method == "ease+popularity")
    per = 4 * users * n
    total = 2 * per * methods
    if available is None or total <= available // 2:
        return ""
    fits = max(1, available // 2 // (2 * 4 * n * methods))
    return (
        f"memory: the scores of {users:,} users x {n:,} items take {references.fmt_gb(per)} "
        f"a method and split, ~{references.fmt_gb(total)} for {methods} methods on both "
        f"splits, {references.fmt_gb(available)} available: --max-users {fits:,} keeps them "
        "within half of it"
    )


def evaluate_all(
    cfg: Config,
    protocol: offline.Protocol,
    opts: EvalOptions,
    users: pd.DataFrame | None = None,
    load_model: Callable[[str], tuple[str, ModelBundle]] | None = None,
    log: Callable[[str], None] = print,
    predictions: Sequence[Predictions] = (),
    available: int | None = None,
) -> Evaluation:
    """Every method on validation and test, and the sections ``opts`` asks for.

    Args:
        cfg: The config (``rank.cf``, ``rank.similarity``, the size limits).
        protocol: The split and its catalogue.
        opts: What to evaluate.
        users: The user table (``user_id`` + attributes) for the group report.
        load_model: URI -> (``name/version``, the version's bundle).
        log: Where progress lines go.
        predictions: Other models' predictions (:func:`predictions.read_predictions`),
            scored as rows of the same table.
        available: Bytes of memory available (:func:`references.available_memory`): a
            dense baseline whose estimated fit exceeds it takes its sparse form. None: the
            size limits alone decide.
    """
    n = len(protocol.catalogue)
    rules = references.size_rules(n, cfg.rank, available)
    notes = list(rules.notes)
    for note in notes:
        log(note)
    memory = memory_note(protocol, opts, available)
    if memory:
        log(memory)
    if rules.cf == "ease":
        best, tried = tuning.tune_ease(protocol, opts.lambdas)
        log(
            "EASE validation NDCG@10 by lambda: "
            + ", ".join(f"{k:g}: {v:.4f}" for k, v in tried.items())
        )
        cf_params = CFParams(ease_lambda=best)
    else:
        cf_params, by_label = tuning.tune_cf(protocol, rules.cf, cfg.rank, opts.lambdas)
        log(
            f"{references.KIND_NAMES[rules.cf]} validation NDCG@10: "
            + ", ".join(f"{k}: {v:.4f}" for k, v in by_label.items())
        )
    cf_label = tuning.cf_label(rules.cf, cf_params)
    cf_models = references.fit_cf_models(protocol, rules.cf, cf_params)
    scored = references.reference_scores(protocol, cfg.rank, cf_label, cf_models, rules)
    knn = CFParams(neighbours=cfg.rank.cf_neighbours)
    knn_label = {"dense": "itemknn", "sparse": tuning.cf_label("itemknn", knn), None: None}
    pop_label = "ease + popularity" if rules.cf == "ease" else f"{cf_label} + popularity"
    aliases = {
        "ease": cf_label,
        "ease+popularity": pop_label,
        "itemknn": knn_label[rules.itemknn],
    }
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
        weights, scored[pop_label] = tuning.ease_popularity(protocol, cf_models)
        log(f"{pop_label} tuned on validation: {weights.describe()}")
    external = {}
    read: list[str] = []
    for preds in predictions:
        result = score_predictions(protocol, preds)
        for note in result.notes:
            log(note)
        read += result.notes
        external[preds.name] = result
    table = offline.score_table(protocol, scored)
    frames = [table, *(pd.DataFrame(result.rows) for result in external.values())]
    kinds = []
    for kind in opts.cf:
        why = references.cf_problem(kind, n, cfg.rank, available)
        if why:
            log(why)
            notes.append(why)
        else:
            kinds.append(kind)
    if kinds:
        frames.append(tuning.cf_table(protocol, kinds, cfg.rank, opts.lambdas))
    table = missing_column(pd.concat(frames, ignore_index=True))
    order = {"val": 0, "test": 1, "test_cold": 2}
    table = table.sort_values(
        ["split", "method"], key=lambda c: c.map(order) if c.name == "split" else c, kind="stable"
    )
    basis = protocol.diversity_basis
    if protocol.diversity_vectors is None:
        basis = f"n/a, {basis} (with --model URI it is measured on that model's item embeddings)"
    else:
        basis = f"intra-list diversity of the top-10 over {basis}"
    params: dict[str, Any] = {"baseline_cf": cf_label, "diversity": basis}
    if rules.cf in ("ease", "sparse"):
        params["ease_lambda"] = cf_params.ease_lambda
    scored_users = len(protocol.scored(protocol.part("test")).targets)
    if scored_users < protocol.split.num_users:
        params["scored_users"] = f"{scored_users} of {protocol.split.num_users}"
    if predictions:
        params["predictions"] = ", ".join(f"{p.name}={p.path}" for p in predictions)
    out = Evaluation(table, [offline.to_markdown(table)], params=params)
    if notes:
        md = f"## Baselines at this catalogue's size ({n:,} items)\n\n" + "\n".join(
            f"- {note}" for note in notes
        )
        out.sections.append(md)
        out.texts["evaluation/size_rules.md"] = md
    if read:
        md = "## Predictions read\n\n" + "\n".join(f"- {note}" for note in read)
        out.sections.append(md)
        out.texts["evaluation/predictions.md"] = md
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
        base = method_label(opts, scored, names, aliases)
    if opts.rerank_sweep:
        assert base is not None
        similarity = opts.similarity or cfg.rank.similarity
        if similarity == "embedding" and embeddings is None:
            log("no model: MMR/MSD/DPP use category vectors as item similarity")
            similarity = "categories"
        elif (
            similarity == "categories"
            and not protocol.catalogue.categories
            and embeddings is not None
        ):
            # genre vectors of zeros would leave MMR/MSD/DPP idle
            log("the items have no categories: MMR/MSD/DPP use the model's item embeddings")
            similarity = "embedding"
        vectors = protocol.category_vectors() if similarity == "categories" else embeddings
        section = sweep_section(
            protocol, scored[base], base, vectors, similarity, opts.depths, opts.max_loss,
            opts.selection,
        )  # fmt: skip
        out.sections.append(section.markdown)
        out.texts |= section.texts
        out.figures |= section.figures
        lists = section.lists
    if opts.groups:
        test = protocol.scored(protocol.part("test"))
        ranks = {
            m: target_ranks(s["test"], test.targets, test.histories) for m, s in scored.items()
        }
        ranks |= {m: r.ranks["test"] for m, r in external.items() if "test" in r.ranks}
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
    fit = tuning.fit_hybrid(protocol, items, queries["val"], cfg.rank.cf, opts.lambdas, cfg.rank)
    log(
        f"{label} hybrid tuned on validation: {fit.weights.describe()}, "
        f"cf {tuning.cf_label(fit.cf, fit.cf_params)}"
    )
    scored[f"llm {label}"] = {p: queries[p] @ items.T for p in parts}
    scored[f"hybrid {label}"] = {
        p: fit.scorers[p].scores(queries[p], part.histories, requests=tuning.requests_of(part))
        for p, part in parts.items()
    }


def fmt_sections(sections: Sequence[str]) -> str:
    return "\n\n".join(sections)


__all__ = [
    "EvalOptions",
    "Evaluation",
    "evaluate_all",
    "fmt_sections",
    "memory_note",
    "method_label",
]
