"""The item catalogue in memory: ids, positions and the text of each item."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa

from llmrec.data.text import ItemText, render_item


@dataclass(frozen=True)
class Catalogue:
    """Items in a fixed order; ``index[item_id]`` is the row of an item in embedding matrices."""

    ids: tuple[str, ...]
    items: dict[str, ItemText] = field(repr=False)

    @classmethod
    def from_table(cls, table: pa.Table) -> Catalogue:
        """Build from a table in the item contract (``item_id, title, text, categories``)."""
        rows = table.select(["item_id", "title", "text", "categories"]).to_pylist()
        items = {
            r["item_id"]: ItemText(r["title"], tuple(r["categories"] or ()), r["text"])
            for r in rows
        }
        return cls(ids=tuple(items), items=items)

    def subset(self, item_ids: set[str]) -> Catalogue:
        """The items in ``item_ids``, in this catalogue's order."""
        ids = tuple(i for i in self.ids if i in item_ids)
        return Catalogue(ids=ids, items={i: self.items[i] for i in ids})

    @cached_property
    def index(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.ids)}

    def texts(self) -> list[str]:
        """Every item rendered for the item tower, in catalogue order."""
        return [render_item(self.items[i]) for i in self.ids]

    @cached_property
    def categories(self) -> tuple[str, ...]:
        """Every category name, sorted."""
        return tuple(sorted({c for it in self.items.values() for c in it.categories}))

    def category_vectors(self) -> np.ndarray:
        """``[items, categories]`` multi-hot genre vectors in catalogue order (one column of
        zeros when the catalogue has no categories)."""
        pos = {c: j for j, c in enumerate(self.categories)}
        out = np.zeros((len(self.ids), max(len(pos), 1)), dtype=np.float32)
        for row, item_id in enumerate(self.ids):
            for c in self.items[item_id].categories:
                out[row, pos[c]] = 1.0
        return out

    def title(self, item_id: str) -> str:
        return self.items[item_id].title

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.items
