"""Finding an item by its description: recall@10 of the item a query describes.

    python benchmarks/query_retrieval.py        # models:/llmrec-scorer-ml100k/4, seed 0
    python benchmarks/query_retrieval.py --model models:/NAME/N --items 300 --live 50 \
        --users 100 --seed 0 --text-weights 2,3,6

In process, no Ray: the version's QueryBuilder (reading queries with the version's language
model, as the ingress does), QueryEncoder and CandidateRanker, the exact index. Described:

- ``--items`` catalogue items, a seeded sample. The query is the title's content words: the
  year in brackets dropped, a trailing article put back in front ("Usual Suspects, The"),
  lower-cased, split into words, stop words and negation words dropped (shuffled, "tomorrow
  never dies action" would be read as "not Action"); with 4 or more words a random 3/4 of
  them (rounded up) kept; shuffled; the item's first category, lower-cased, appended
  ("Usual Suspects, The (1995)" -> "suspects usual crime").
- ``--live`` items posted live through the path serving uses (``QueryEncoder.embed_items``,
  then ``apply_live`` on builder, encoder and ranker): issue 22's cookbook with its query
  word for word, and synthetic items of the same shape ("A field guide of alpine wild
  mushrooms and lake-side bird walks."), each asked for by its text's content words
  ("-side" and stop words dropped), abridged and shuffled as above.

Each is asked as ``{"query": q, "k": 10}`` (no history); recall@10 and MRR@10 of the
described item. Items whose text (what the item tower reads) is the same as the described
item's count as it: ml-100k lists some films twice under two ids. Beside the served answers,
the frozen base model's zero-shot cosine between the query and every item's text over the
same catalogue and live items: no adapter, no projection, no ID embeddings (the stored
vectors it reads are checked against a fresh encoding of some of them).

Served: before (no text-match term: a version written before it, as registered) and after
(the term: for such a version a temporary copy given what ``write_bundle`` now writes,
``llmrec.registry.bundle.add_text_match``); ``--text-weights`` adds the term at other weights. A
second table asks users with a history (leave-one-out over ``--users`` users with 6+
items: the last held out, up to 50 before it): history only (the lists must be identical
before and after), + a query describing the held-out item, + its first category as a vague
query.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import quiet
from _described import (
    COOKBOOK,
    Described,
    live_items,
    rank_of,
    recall_mrr,
    title_query,
    twins,
)
from _table import machine, print_table


class Served:
    """One version as served in process (encoder and ranker), with the live items posted
    through the serving path; ``text_weight`` replaces the request weights' text weight."""

    def __init__(self, name: str, bundle_dir: Path, live: list, threads: int) -> None:
        from llmrec.registry.bundle import ModelBundle
        from llmrec.serving import CandidateRanker, QueryEncoder
        from llmrec.serving.catalogue_state import LiveChanges

        self.name = name
        bundle = ModelBundle(bundle_dir)
        self.encoder = QueryEncoder(bundle, threads=threads, device="cpu")
        self.ranker = CandidateRanker(bundle)
        changes = LiveChanges(1, list(live), self.encoder.embed_items(live), frozenset())
        self.encoder.apply_live(changes)
        self.ranker.apply_live(changes)

    def with_text_weight(self, name: str, weight: float) -> Served:
        other = copy.copy(self)
        other.name = name
        other.ranker = copy.copy(self.ranker)
        h = self.ranker.hybrid
        other.ranker.hybrid = h.with_weights(h.weights, replace(h.request_weights, text=weight))
        return other

    def in_full(self, name: str) -> Served:
        """An ablation: the text-match part counted in full for users with a history too
        (not only where an item stands out)."""
        other = copy.copy(self)
        other.name = name
        other.ranker = copy.copy(self.ranker)
        hybrid = other.ranker.hybrid = copy.copy(self.ranker.hybrid)
        full = type(hybrid).text_part

        def text_part(
            queries: np.ndarray,
            rows: np.ndarray | None = None,
            histories: Sequence[Sequence[int]] | None = None,
        ) -> np.ndarray:
            return full(hybrid, queries, rows)

        hybrid.text_part = text_part  # type: ignore[method-assign]
        return other

    def answer(self, queries: list, batch: int = 64) -> list[list[str]]:
        out = []
        for start in range(0, len(queries), batch):
            chunk = queries[start : start + batch]
            answers = self.ranker.rank_many(self.encoder.encode(chunk), chunk)
            out += [[i.item_id for i in a] for a in answers]
        return out


def variants(
    path: Path, live: list, weights: list[float], threads: int, ablate: bool = False
) -> tuple[list, Path | None]:
    """Served before (no text-match term) and after (the term at the version's weight, and
    at each of ``weights``). A version written before the term is served as registered
    (before) and from a copy given what ``write_bundle`` now writes (after)."""
    from llmrec.registry.bundle import add_text_match, has_text_match

    tmp = None
    if has_text_match(path):
        after = Served("with text match", path, live, threads)
        before = after.with_text_weight("before: no text match", 0.0)
    else:
        before = Served("before: no text match", path, live, threads)
        tmp = Path(tempfile.mkdtemp(prefix="llmrec-query-retrieval-"))
        shutil.copytree(path, tmp / "bundle")
        add_text_match(tmp / "bundle")
        after = Served("with text match", tmp / "bundle", live, threads)
    w = after.ranker.hybrid.request_weights.text
    after.name = f"after: text weight {w:g}"
    swept = [after.with_text_weight(f"text weight {x:g}", x) for x in weights if x != w]
    if ablate:
        swept.append(after.in_full(f"ablation: weight {w:g}, in full with a history"))
    return [before, after, *swept], tmp


def zero_shot(base: object, item_vectors: np.ndarray, queries: list[str]) -> np.ndarray:
    """``[queries, items]`` cosines of the frozen base model."""
    q = base.encode(queries, kind="query").numpy()  # type: ignore[attr-defined]
    return q @ np.asarray(item_vectors, dtype=np.float32).T


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models:/llmrec-scorer-ml100k/4")
    parser.add_argument("--items", type=int, default=300, help="catalogue items described")
    parser.add_argument("--live", type=int, default=50, help="live items posted and described")
    parser.add_argument("--users", type=int, default=100, help="users with a history")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-weights", default="", help="also these text weights: 1,2,4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--ablate",
        action="store_true",
        help="also the text-match part in full for users with a history",
    )
    args = parser.parse_args()
    quiet()
    import mlflow
    import torch
    from llmrec.data.text import render_item
    from llmrec.registry import store as registry
    from llmrec.registry.bundle import ModelBundle, item_text_vectors
    from llmrec.serving import QueryBuilder, RecommendRequest
    from llmrec.serving.catalogue_state import LiveChanges, LiveItem

    torch.set_num_threads(args.threads)
    clock = time.perf_counter()
    tracking = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{Path('mlflow.db').resolve()}")
    mlflow.set_tracking_uri(tracking)
    version, path = registry.cached_bundle(args.model)
    bundle = ModelBundle(path)
    cat = bundle.catalogue
    rng = np.random.default_rng(args.seed)
    live_rows = live_items(args.live, args.seed)
    live = [LiveItem(i, t, x, (c,)) for i, t, x, c, _ in live_rows]
    described = []
    for r in rng.choice(len(cat.ids), min(args.items, len(cat.ids)), replace=False):
        item = cat.items[cat.ids[r]]
        described.append(Described(cat.ids[r], title_query(item.title, item.categories, rng)))
    described_live = [Described(i, q) for i, _, _, _, q in live_rows]

    weights = [float(w) for w in args.text_weights.split(",") if w.strip()]
    served, tmp = variants(path, live, weights, args.threads, args.ablate)
    after = served[1]
    builder = QueryBuilder(bundle, parser=after.encoder.parser())  # reads queries as served
    builder.apply_live(LiveChanges(1, live, None, frozenset()))

    def built(items: list[Described]) -> list:
        return [builder.build(RecommendRequest(query=d.query, k=10)) for d in items]

    queries = {"catalogue": built(described), "live": built(described_live)}
    answers = {s.name: {part: s.answer(qs) for part, qs in queries.items()} for s in served}

    # zero-shot: the base's item text vectors the version now stores (catalogue, then the live
    # items as embed_items gave them), checked against a fresh encoding of some of them
    hybrid, ids = after.ranker.hybrid, after.ranker.ids
    assert hybrid.item_text is not None and len(ids) == len(cat) + len(live)
    base = bundle.load_base_scorer()
    check = [*rng.choice(len(cat), 50, replace=False), *range(len(cat), len(ids))]
    texts = [render_item(cat.items[i]) for i in cat.ids] + [
        render_item(i.item_text()) for i in live
    ]
    fresh = item_text_vectors(base, [texts[i] for i in check])
    drift = float(np.abs(fresh - hybrid.item_text[check]).max())
    same = twins(ids, texts)
    row = {item_id: n for n, item_id in enumerate(ids)}
    every = [*described, *described_live]
    cos = zero_shot(base, hybrid.item_text, [d.query for d in every])
    zs = []
    for c, d in zip(cos, every, strict=True):
        others = np.ones(len(ids), dtype=bool)
        others[[row[i] for i in same[d.item_id]]] = False
        zs.append(int((c[others] > c[row[d.item_id]]).sum()) + 1)
    zs_parts = {"catalogue": zs[: len(described)], "live": zs[len(described) :]}

    header = ["items described"]
    for s in served:
        header += [f"{s.name}: recall@10", "MRR@10"]
    header += ["zero-shot base cosine: recall@10", "MRR@10"]
    rows = []
    for part, items in (("catalogue", described), ("live", described_live)):
        cells: list[object] = [f"{part} ({len(items)})"]
        for s in served:
            got = answers[s.name][part]
            ranks = [rank_of(a, same[d.item_id]) for a, d in zip(got, items, strict=True)]
            cells += recall_mrr(ranks)
        rows.append([*cells, *recall_mrr(zs_parts[part])])
    cook: list[object] = ["issue 22's cookbook: rank"]
    for s in served:
        r = rank_of(answers[s.name]["live"][0], same["live-cookbook"])
        cook += [str(r) if r else "not in top 10", ""]
    rows.append([*cook, str(zs_parts["live"][0]), ""])
    print_table(
        f'query -> the item it describes, {{"query": q, "k": 10}}, {version.uri} '
        f"({len(cat)} items + {len(live)} live), seed {args.seed}; {machine()}",
        header,
        rows,
    )
    print(f"\ncookbook query {COOKBOOK[3]!r}, top 5:")
    for s in served:
        print(f"  {s.name}: {answers[s.name]['live'][0][:5]}")
    print(f"stored vs fresh base text vectors ({len(check)} items): max |diff| {drift:.2g}")
    print("e.g.", "; ".join(f"{d.query!r} -> {cat.title(d.item_id)}" for d in described[:4]))
    print("live e.g.", "; ".join(f"{d.query!r} -> {d.item_id}" for d in described_live[1:4]))

    users_table(args, bundle, builder, served, rng, same)
    print(f"\n{time.perf_counter() - clock:.0f} s in all")
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def users_table(
    args: argparse.Namespace,
    bundle: object,
    builder: object,
    served: list[Served],
    rng: np.random.Generator,
    same: dict[str, frozenset[str]],
) -> None:
    """Leave-one-out over users with 6+ items: the last held out, up to 50 before it as the
    history; asked with the history only, with a query describing the held-out item, and
    with its first category as a query."""
    from llmrec.serving import RecommendRequest

    cat = bundle.catalogue  # type: ignore[attr-defined]
    logs: dict[str, list[str]] = bundle.histories  # type: ignore[attr-defined]
    users = [u for u, h in logs.items() if len(h) >= 6]
    picked = rng.choice(len(users), min(args.users, len(users)), replace=False)
    kinds: dict[str, list] = {"history only": [], "+ describing query": [], "+ category": []}
    targets = []
    for u in (users[i] for i in sorted(picked)):
        history, target = logs[u][:-1][-50:], logs[u][-1]
        item = cat.items[target]
        asked = {
            "history only": None,
            "+ describing query": title_query(item.title, item.categories, rng),
            "+ category": item.categories[0].lower() if item.categories else "a film",
        }
        for kind, query in asked.items():
            req = RecommendRequest(history=history, query=query, k=10)
            kinds[kind].append(builder.build(req))  # type: ignore[attr-defined]
        targets.append(target)
    header = ["request (held-out item's)"]
    for s in served:
        header += [f"{s.name}: recall@10", "MRR@10"]
    rows, lists = [], {}
    for kind, qs in kinds.items():
        cells: list[object] = [f"{kind} ({len(qs)})"]
        for s in served:
            got = lists[(kind, s.name)] = s.answer(qs)
            ranks = [rank_of(a, same[t]) for a, t in zip(got, targets, strict=True)]
            cells += recall_mrr(ranks)
        rows.append(cells)
    print_table(
        f"users with a history (leave-one-out: last item held out), seed {args.seed}",
        header,
        rows,
    )
    a, b = (lists[("history only", s.name)] for s in served[:2])
    alike = sum(x == y for x, y in zip(a, b, strict=True))
    print(f"history only: {alike} of {len(a)} top-10 lists identical before and after")


if __name__ == "__main__":
    sys.exit(main())
