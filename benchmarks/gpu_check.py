"""The GPU check: both scorer designs on one device, without Ray or MLflow.

    python benchmarks/gpu_check.py --data path/to/ml-100k
    python benchmarks/gpu_check.py --data path/to/ml-100k --base /path/to/minilm-fp16

Runs where only PyTorch, transformers and peft are installed (a bare GPU machine): the data
contract, the protocol split, the sequential design's objective and evaluation are the
library's own; only Ray Train's worker loop is replaced by a plain one. Prints, per setting,
examples/s, peak GPU memory, the best validation NDCG@10 and the test figures at that epoch:

- the sequential design with a frozen text encoder (the CPU default), then wider;
- the sequential design with the adapter trained on the top layers (``text_tuning:
  adapter``), which a CPU cannot afford at full text batch;
- the text design's training step (one tower over user and item texts), for its rate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="a MovieLens folder or contract folder")
    parser.add_argument("--base", default="", help="model.base (default: the packaged MiniLM)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument(
        "--settings",
        default="frozen,wide,adapter,text",
        help="comma-separated NAME[+section.key=value...], NAME one of frozen, wide, adapter, "
        "text; e.g. frozen+train.id_dropout=0.5",
    )
    parser.add_argument("--cold", type=float, default=0.0, help="data.cold_items (cold start)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-lr", default="1e-4", help="comma-separated: one adapter run each")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model.* / train.* overrides applied to every setting, e.g. train.lr=0.001",
    )
    args = parser.parse_args()
    import torch
    from llmrec.config import PACKAGED_MINILM, DataConfig
    from llmrec.data.pipeline import user_windows
    from llmrec.data.prepare import load_source, prepare, split_and_save
    from llmrec.evaluation import offline
    from llmrec.modeling.scorer import LLMScorer
    from llmrec.training.designs import sequence_eval_set, trained_item_mask
    from llmrec.training.sequential import SequenceInputs

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    work = Path(tempfile.mkdtemp(prefix="llmrec-gpu-"))
    prepared = prepare(load_source(args.data, DataConfig()), work)
    split, cold = split_and_save(prepared, 5, args.cold, 0)
    protocol = offline.Protocol.create(split, prepared.catalogue, cold)
    catalogue = prepared.catalogue
    sequences = prepared.out_dir / "train_sequences.parquet"
    from llmrec.config import load_config

    overrides = load_config(None, args.overrides)
    base_cfg = replace(overrides.model, base=args.base or PACKAGED_MINILM, max_item_tokens=48)
    base = LLMScorer(base_cfg).float().to(device).eval()
    t0 = time.perf_counter()
    item_text = base.encode(catalogue.texts(), kind="item", batch_size=512).numpy()
    print(f"{len(catalogue)} item texts embedded in {time.perf_counter() - t0:.1f} s on {device}")
    inputs = SequenceInputs(
        catalogue.texts(),
        item_text,
        trained_item_mask(sequences, catalogue),
        [""],
        np.zeros((1, item_text.shape[1]), dtype=np.float32),
    )
    import pyarrow.parquet as pq

    rows_of = catalogue.index
    windows = [
        w
        for row in pq.read_table(sequences).to_pylist()  # cold items already left out
        for w in user_windows(row, rows_of, {}, base_cfg.seq_len)
    ]
    sets = {p: sequence_eval_set(protocol, p, catalogue, base) for p in ("val", "test")}
    cold_rows = protocol.part("test").cold_rows
    if len(cold_rows):
        sets["test_cold"] = sets["test"].subset(cold_rows)
    shapes: dict[str, dict[str, Any]] = {
        "frozen": {},
        "wide": {"dim": 128},
        "adapter": {"text_tuning": "adapter", "adapter_layers": 2},
    }
    results = []
    for setting in args.settings.split(","):
        name, *extra = setting.split("+")
        cfg = load_config(None, [*args.overrides, *extra])
        model_cfg = replace(cfg.model, base=base_cfg.base, max_item_tokens=48)
        if name == "text":
            results.append(_text_rate(model_cfg, protocol, catalogue, device))
            continue
        lrs = [float(v) for v in args.text_lr.split(",")] if name == "adapter" else [1e-4]
        for text_lr in lrs:
            train = replace(
                cfg.train, epochs=args.epochs, text_batch=512, seed=args.seed, text_lr=text_lr
            )
            label = f"{setting}, text_lr {text_lr:g}" if name == "adapter" else setting
            shaped = replace(model_cfg, **shapes[name])
            results.append(_sequential(label, shaped, train, inputs, windows, sets, device))
    print(
        "\n| setting | examples/s | peak GPU memory | epochs (best) | val NDCG@10 | "
        "test NDCG@10 | test HR@10 | cold test HR@10 | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['setting']} | {r['rate']:.0f} | {r['memory']:.2f} GiB | {r['epochs']} | "
            f"{r['val']} | {r['test_ndcg']} | {r['test_hr']} | {r.get('cold_hr', '-')} | "
            f"{r['seconds']:.0f} |"
        )
    return 0


def _sequential(
    name: str,
    model_cfg: Any,
    train: Any,
    inputs: Any,
    windows: list[dict[str, Any]],
    sets: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    import torch
    from llmrec.modeling.scorer import LLMScorer
    from llmrec.training.sequential import (
        SequenceObjective,
        evaluate_sequential,
        load_state,
        optimizer_for,
        trained_state,
    )

    text = LLMScorer(model_cfg).float() if model_cfg.text_tuning == "adapter" else None
    objective = SequenceObjective(model_cfg, train, inputs, text).to(device)
    opt = optimizer_for(objective, train)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rng = np.random.default_rng(train.seed)
    best, best_val, best_epoch, bad, scored, spent = None, -1.0, 0, 0, 0, 0.0
    start = time.perf_counter()
    epoch = 0
    for epoch in range(1, train.epochs + 1):
        objective.train()
        order = rng.permutation(len(windows))
        t0 = time.perf_counter()
        for b in range(0, len(order), train.batch_size):
            part = [windows[i] for i in order[b : b + train.batch_size]]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=text is not None):
                loss = objective(
                    [w["items"].tolist() for w in part], [w["queries"].tolist() for w in part]
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            scored += sum(len(w["items"]) - 1 for w in part)
        if device == "cuda":
            torch.cuda.synchronize()
        spent += time.perf_counter() - t0
        if text is not None:
            objective.items.refresh()
        val = evaluate_sequential(objective, sets["val"])["ndcg_at_10"]
        if val > best_val:
            best, best_val, best_epoch, bad = trained_state(objective), val, epoch, 0
        else:
            bad += 1
        print(f"{name} epoch {epoch}: val NDCG@10 {val:.4f} (best {best_val:.4f})", flush=True)
        if bad >= train.patience:
            break
    assert best is not None
    load_state(objective, best)
    if text is not None:
        objective.items.refresh()
    test = evaluate_sequential(objective, sets["test"])
    cold = evaluate_sequential(objective, sets["test_cold"]) if "test_cold" in sets else None
    memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    return {
        "setting": f"sequential, {name} (dim {model_cfg.dim}, {model_cfg.text_tuning} text)",
        "rate": scored / max(spent, 1e-9),
        "memory": memory,
        "epochs": f"{epoch} ({best_epoch})",
        "val": f"{best_val:.4f}",
        "test_ndcg": f"{test['ndcg_at_10']:.4f}",
        "test_hr": f"{test['hr_at_10']:.4f}",
        "cold_hr": f"{cold['hr_at_10']:.4f} ({len(sets['test_cold'])} users)" if cold else "-",
        "seconds": time.perf_counter() - start,
    }


def _text_rate(model_cfg: Any, protocol: Any, catalogue: Any, device: str) -> dict[str, Any]:
    """Steps of the text design's in-batch softmax over (user text, item text) pairs."""
    import torch
    from llmrec.data.pipeline import user_examples
    from llmrec.modeling.losses import in_batch_softmax
    from llmrec.modeling.scorer import LLMScorer

    cfg = replace(model_cfg, architecture="text", max_query_tokens=128)
    scorer = LLMScorer(cfg).float().to(device).train()
    frame = protocol.split.train_sequences()
    pairs = [e for row in frame.to_dict("records") for e in user_examples(row, catalogue, 10, 4)]
    opt = torch.optim.AdamW([p for p in scorer.parameters() if p.requires_grad], lr=5e-4)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batch, steps, seen = 64, 0, 0
    start = time.perf_counter()
    for b in range(0, min(len(pairs), 40 * batch), batch):
        part = pairs[b : b + batch]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            q, i, scale, _ = scorer([p["query_text"] for p in part], [p["item_text"] for p in part])
        ids = torch.tensor([p["item_index"] for p in part], device=q.device)
        loss = in_batch_softmax(q, i, ids, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps, seen = steps + 1, seen + len(part)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    return {
        "setting": f"text design, {steps} steps of 64 pairs (rate only)",
        "rate": seen / seconds,
        "memory": memory,
        "epochs": "-",
        "val": "-",
        "test_ndcg": "-",
        "test_hr": "-",
        "seconds": seconds,
    }


if __name__ == "__main__":
    sys.exit(main())
