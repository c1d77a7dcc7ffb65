"""From a source (demo, contract files, MovieLens) to validated contract Parquet and splits.

This is the one entry for data: every run reads its source here, checks it against the
contract, writes the clean tables and the rejected rows, and splits the interactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llmrec.config import DataConfig
from llmrec.data.catalogue import Catalogue
from llmrec.data.contract import check_interactions, check_items, check_users
from llmrec.data.demo import generate_demo
from llmrec.data.readers import RawData, is_movielens, read_contract_folder, read_movielens
from llmrec.data.splits import Split, drop_items, hold_out_items, leave_one_out


@dataclass
class Prepared:
    """Clean tables on disk, what was set aside, and the split."""

    out_dir: Path
    interactions: pa.Table
    items: pa.Table
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    users: pa.Table | None = None
    """The optional user table (``user_id`` + attributes), when the source has one."""

    @property
    def catalogue(self) -> Catalogue:
        return Catalogue.from_table(self.items)

    def summary(self) -> str:
        """Human-readable counts of kept and rejected rows."""
        lines = [
            f"items: {self.items.num_rows} kept, interactions: {self.interactions.num_rows} kept"
            + (f", users: {self.users.num_rows} kept" if self.users is not None else ""),
        ]
        for table, counts in self.rejected.items():
            for reason, n in sorted(counts.items()):
                lines.append(f"rejected {table}: {n} x {reason}")
        if any(self.rejected.values()):
            lines.append(f"rejected rows written to {self.out_dir / 'rejected'}")
        return "\n".join(lines)


def load_source(source: str, demo: DataConfig | None = None) -> RawData:
    """Read ``demo``, ``movielens:PATH``, a MovieLens folder/zip, or a contract folder."""
    if source == "demo":
        cfg = demo or DataConfig()
        d = generate_demo(cfg.demo_users, cfg.demo_items, cfg.demo_seed)
        return RawData(d.interactions, d.items, "demo:interactions", "demo:items")
    if source.startswith("movielens:"):
        return read_movielens(source.removeprefix("movielens:"))
    if is_movielens(source):
        return read_movielens(source)
    return read_contract_folder(source)


def prepare(raw: RawData, out_dir: str | Path) -> Prepared:
    """Check the tables, write ``items.parquet``, ``interactions.parquet``,
    ``users.parquet`` (when the source has users) and ``rejected/``.

    Raises:
        ContractError: a column is missing or mistyped (rows are never the cause).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = check_items(raw.items, raw.items_source)
    interactions = check_interactions(
        raw.interactions, raw.interactions_source, set(items.table.column("item_id").to_pylist())
    )
    pq.write_table(items.table, out / "items.parquet")
    pq.write_table(interactions.table, out / "interactions.parquet")
    checked_tables = {"items": items, "interactions": interactions}
    if raw.users is not None:
        checked_tables["users"] = check_users(raw.users, raw.users_source or "users")
        pq.write_table(checked_tables["users"].table, out / "users.parquet")
    elif (out / "users.parquet").exists():
        (out / "users.parquet").unlink()
    rejected_dir = out / "rejected"
    for name, checked in checked_tables.items():
        target = rejected_dir / f"{name}.parquet"
        if not checked.rejected.empty:
            rejected_dir.mkdir(exist_ok=True)
            checked.rejected.to_parquet(target, index=False)
        elif target.exists():
            target.unlink()
    users = checked_tables.get("users")
    return Prepared(
        out,
        interactions.table,
        items.table,
        {name: checked.counts() for name, checked in checked_tables.items()},
        users.table if users is not None else None,
    )


def split_and_save(
    prepared: Prepared, min_core: int, cold_share: float = 0.0, cold_seed: int = 0
) -> tuple[Split, frozenset[str]]:
    """Leave-one-out split and the cold items (``cold_share`` of them, held out of training
    entirely); writes ``train_sequences.parquet`` (the Ray Data input) without them."""
    split = leave_one_out(prepared.interactions, min_core)
    cold = hold_out_items(split, cold_share, cold_seed)
    sequences = drop_items(split.train_sequences(), cold)
    sequences.to_parquet(prepared.out_dir / "train_sequences.parquet", index=False)
    return split, cold


__all__ = ["Prepared", "load_source", "prepare", "split_and_save"]
