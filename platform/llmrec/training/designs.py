"""What each scorer design needs around the Ray Train loop: its examples, its validation set,
its inputs, and the trained towers built from the final checkpoint.

``text``: (user written as text -> item written as text) pairs, the adapter fine-tuned end to
end. ``sequential``: windows of item histories; the catalogue's and the requests' texts are
embedded once here, on the driver, with the base model (and the adapter to start from).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from llmrec.config import Config
from llmrec.data.catalogue import Catalogue
from llmrec.data.events import negative_rows
from llmrec.data.pipeline import build_train_dataset, build_window_dataset, training_queries
from llmrec.evaluation import offline
from llmrec.modeling.scorer import LLMScorer, build_scorer
from llmrec.modeling.sequential import SequentialRecommender, split_state
from llmrec.modeling.towers import SequentialTowers, TextTowers, Towers
from llmrec.training.sequential import SequenceEvalSet, SequenceInputs
from llmrec.training.validation import EvalSet, build_eval_set

if TYPE_CHECKING:
    import ray.data


@dataclass(frozen=True)
class TrainingData:
    """The Ray Data examples, the validation set and (sequential design) the text inputs."""

    dataset: ray.data.Dataset | Any
    eval_set: EvalSet | SequenceEvalSet
    inputs: SequenceInputs | None = None
    batch_windows: int = 0
    """Windows per worker per step (``sequential``; 0: ``train.batch_size``)."""
    negatives: list[list[int]] | None = None
    """``sequential``: the explicit negatives (per user, item rows) that the windows' ``user``
    points into (None: none)."""

    def loop_options(self) -> dict[str, Any] | None:
        """The sequential loop's options these examples need (None: none)."""
        options: dict[str, Any] = {}
        if self.batch_windows:
            options["batch_windows"] = self.batch_windows
        if self.negatives:
            options["negatives"] = self.negatives
        return options or None


def training_data(
    cfg: Config,
    sequences: Path,
    catalogue: Catalogue,
    protocol: offline.Protocol,
    init_state: dict[str, torch.Tensor] | None = None,
    negatives: pa.Table | None = None,
    held_out: frozenset[str] = frozenset(),
) -> TrainingData:
    """Examples and validation users of ``cfg.model.architecture``.

    Args:
        cfg: The run's config.
        sequences: ``train_sequences.parquet`` (what training may see).
        catalogue: The whole catalogue (the item-ID table's order).
        protocol: The evaluation protocol (validation users, the ranked catalogue).
        init_state: Trained tensors to start from (their text adapter embeds the texts).
        negatives: The negative (user, item) pairs of the data
            (:attr:`llmrec.data.prepare.Prepared.negatives`): explicit negatives of the
            sequential design (``train.negative_weight``; the text design only keeps them
            out of its positives, as the sequences already do).
        held_out: Items training must not see (the cold items): never a negative either.

    A user's explicit negatives are those no later than their last training interaction.
    """
    if cfg.model.architecture == "text":
        dataset = build_train_dataset(
            sequences, catalogue, cfg.data.max_history, cfg.data.examples_per_user, cfg.train.seed
        )
        val = build_eval_set(protocol.split, "val", protocol.catalogue, cfg.data.max_history)
        return TrainingData(dataset, val)
    queries = training_queries(sequences)
    query_ids = {q: i + 1 for i, q in enumerate(queries)}
    base, inputs = sequence_inputs(
        cfg, catalogue, queries, trained_item_mask(sequences, catalogue), init_state
    )
    owners: dict[str, int] = {}
    table: list[list[int]] = []
    if negatives is not None and negatives.num_rows and cfg.train.negative_weight > 0:
        # a user's negatives up to their last training interaction (none from the time of
        # their validation and test targets)
        seq = pq.read_table(sequences, columns=["user_id", "timestamps"]).to_pydict()
        last = {
            str(u): max(ts) for u, ts in zip(seq["user_id"], seq["timestamps"], strict=True) if ts
        }
        owners, table = negative_rows(negatives, catalogue.index, last, held_out)
    dataset = build_window_dataset(
        sequences, catalogue, query_ids, cfg.model.seq_len, cfg.train.seed, owners or None
    )
    windows = cfg.train.batch_size
    if cfg.train.batch_positions:
        windows = batch_windows(sequences, cfg.train.batch_size, cfg.model.seq_len)
    eval_set = sequence_eval_set(protocol, "val", catalogue, base)
    return TrainingData(dataset, eval_set, inputs, windows, table or None)


def batch_windows(sequences: Path, batch_size: int, seq_len: int) -> int:
    """Windows per step that score about ``batch_size * seq_len`` positions, given the
    training sequences' lengths (:func:`user_windows` cuts them into windows of ``seq_len``
    positions); never fewer than ``batch_size`` windows."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(pq.read_table(sequences, columns=["items"])["items"])
    positions = np.maximum(lengths.to_numpy(zero_copy_only=False).astype(np.int64) - 1, 0)
    windows = int(np.ceil(positions / seq_len).sum())
    if windows == 0:
        return batch_size
    per_window = positions.sum() / windows
    return max(batch_size, round(batch_size * seq_len / per_window))


def sequence_inputs(
    cfg: Config,
    catalogue: Catalogue,
    queries: list[str],
    known: np.ndarray,
    init_state: dict[str, torch.Tensor] | None = None,
) -> tuple[LLMScorer, SequenceInputs]:
    """The base model (with the text adapter of ``init_state``, if any) and the sequential
    design's inputs: the catalogue's and the requests' (``queries``, the vocabulary whose id
    ``k + 1`` is ``queries[k]``) embeddings; ``known``: the items training sees."""
    base = LLMScorer(cfg.model).eval()
    if init_state:
        _, text = split_state(init_state)
        if text:
            base.load_state(text)
    inputs = SequenceInputs(
        item_texts=catalogue.texts(),
        item_text=base.encode(catalogue.texts(), kind="item").numpy(),
        known=known,
        query_texts=["", *queries],
        query_text=_with_empty_row(base, queries),
    )
    return base, inputs


def user_eval_set(
    histories: list[list[int]],
    targets: np.ndarray,
    queries: list[str | None],
    candidates: np.ndarray,
    base: LLMScorer,
) -> SequenceEvalSet:
    """Users given as catalogue rows (histories, targets), ranked over ``candidates``
    (rows): the positions and the requests' base-model embeddings a
    :class:`SequenceEvalSet` holds."""
    place = {int(r): k for k, r in enumerate(candidates)}
    asked = [i for i, q in enumerate(queries) if q is not None and q.strip()]
    query_text = np.zeros((len(queries), base.model.config.hidden_size), dtype=np.float32)
    if asked:
        query_text[asked] = base.encode([str(queries[i]) for i in asked], kind="query").numpy()
    return SequenceEvalSet(
        histories=[list(h) for h in histories],
        candidates=np.asarray(candidates, dtype=np.int64),
        targets=np.array([place[int(t)] for t in targets], dtype=np.int64),
        exclude=[[place[r] for r in h if r in place] for h in histories],
        queries=[q if q is not None and q.strip() else None for q in queries],
        query_text=query_text,
    )


def sequence_eval_set(
    protocol: offline.Protocol, part_name: str, catalogue: Catalogue, base: LLMScorer
) -> SequenceEvalSet:
    """A split part's users as catalogue rows, ranked over the protocol's catalogue."""
    part = protocol.part(part_name)
    rows = catalogue.index
    queries = [q if isinstance(q, str) and q.strip() else None for q in part.rows["target_query"]]
    asked = [i for i, q in enumerate(queries) if q is not None]
    query_text = np.zeros((len(queries), base.model.config.hidden_size), dtype=np.float32)
    if asked:
        query_text[asked] = base.encode([str(queries[i]) for i in asked], kind="query").numpy()
    return SequenceEvalSet(
        histories=[[rows[i] for i in h] for h in part.rows["history"]],
        candidates=np.array([rows[i] for i in protocol.catalogue.ids], dtype=np.int64),
        targets=part.targets,
        exclude=part.histories,
        queries=queries,
        query_text=query_text,
    )


def trained_towers(
    cfg: Config, checkpoint_dir: Path, catalogue: Catalogue, data: TrainingData
) -> tuple[Towers, np.ndarray]:
    """The towers of the final checkpoint and the catalogue's item vectors (catalogue order).

    The sequential design registers its best epoch on validation.
    """
    if cfg.model.architecture == "text":
        scorer = build_scorer(cfg.model, checkpoint_dir)
        vectors = scorer.encode(catalogue.texts(), kind="item").numpy()
        return TextTowers(scorer, catalogue.items, cfg.data.max_history), vectors
    assert data.inputs is not None
    from safetensors.torch import load_file

    from llmrec.training.sequential_loop import BEST

    model_state, text_state = split_state(load_file(str(checkpoint_dir / BEST)))
    text = LLMScorer(cfg.model).eval()
    item_text = torch.as_tensor(data.inputs.item_text)
    if text_state:
        text.load_state(text_state)
        item_text = text.encode(catalogue.texts(), kind="item")
    model = SequentialRecommender(cfg.model, item_text.shape[1], len(catalogue))
    model.load_tensors(model_state)
    model.eval()
    with torch.no_grad():
        known = torch.as_tensor(data.inputs.known)
        vectors = model.items(item_text, known).numpy()
    towers = SequentialTowers(text, model, catalogue.ids, vectors, tuned_text=bool(text_state))
    return towers, vectors


def trained_item_mask(sequences: Path, catalogue: Catalogue) -> np.ndarray:
    """Which catalogue items occur in the training sequences (they get an ID embedding)."""
    import pyarrow.compute as pc

    seen = set(pc.list_flatten(pq.read_table(sequences, columns=["items"])["items"]).to_pylist())
    return np.array([i in seen for i in catalogue.ids], dtype=bool)


def _with_empty_row(base: LLMScorer, queries: list[str]) -> np.ndarray:
    dim = base.model.config.hidden_size
    if not queries:
        return np.zeros((1, dim), dtype=np.float32)
    encoded = base.encode(queries, kind="query").numpy()
    return np.concatenate([np.zeros((1, dim), dtype=np.float32), encoded])


__all__ = [
    "TrainingData",
    "batch_windows",
    "sequence_eval_set",
    "sequence_inputs",
    "trained_item_mask",
    "trained_towers",
    "training_data",
    "user_eval_set",
]
