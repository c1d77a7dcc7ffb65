"""The item catalogue in memory: ids, positions, the text of each item and its attributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa

from llmrec.data.text import ItemText, render_item


@dataclass(frozen=True)
class Catalogue:
    """Items in a fixed order; ``index[item_id]`` is the row of an item in embedding matrices.

    ``attributes`` holds the item table's extra text columns (``provider``, ``brand``...):
    column -> item id -> its values (a string column gives one value, a list column many).
    """

    ids: tuple[str, ...]
    items: dict[str, ItemText] = field(repr=False)
    attributes: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_table(cls, table: pa.Table) -> Catalogue:
        """Build from a table in the item contract (``item_id, title, text, categories``);
        extra columns of strings or lists of strings become attributes."""
        # column by column (no dict per row), one string per category name, not one per item
        names: dict[str, str] = {}
        columns = [table.column(c).to_pylist() for c in ("item_id", "title", "categories")]
        items = {}
        for item_id, title, cats, text in zip(
            *columns, table.column("text").to_pylist(), strict=True
        ):
            items[item_id] = ItemText(
                title, tuple(names.setdefault(c, c) for c in cats or ()), text
            )
        ids = table.column("item_id").to_pylist()
        attributes = {}
        for name in table.column_names:
            typ = table.schema.field(name).type
            if name in CONTRACT_COLUMNS or not (_is_text(typ) or _is_text_list(typ)):
                continue
            values = table.column(name).to_pylist()
            by_item: dict[str, tuple[str, ...]] = {}
            for item_id, v in zip(ids, values, strict=True):
                if item_id not in by_item:  # the first row of an id, as in ``items``
                    by_item[item_id] = _values(v)
            attributes[name] = by_item
        return cls(ids=tuple(items), items=items, attributes=attributes)

    def subset(self, item_ids: set[str]) -> Catalogue:
        """The items in ``item_ids``, in this catalogue's order."""
        ids = tuple(i for i in self.ids if i in item_ids)
        return Catalogue(
            ids=ids,
            items={i: self.items[i] for i in ids},
            attributes={a: {i: v[i] for i in ids} for a, v in self.attributes.items()},
        )

    def attribute_values(self, name: str) -> list[tuple[str, ...]]:
        """The values of attribute ``name`` (``categories`` or an extra column) per item, in
        catalogue order.

        Raises:
            KeyError: the catalogue has no such attribute.
        """
        if name == "categories":
            return [self.items[i].categories for i in self.ids]
        if name not in self.attributes:
            raise KeyError(name)
        return [self.attributes[name][i] for i in self.ids]

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """``categories`` and every extra attribute column."""
        return ("categories", *sorted(self.attributes))

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


CONTRACT_COLUMNS = ("item_id", "title", "text", "categories", "embedding")


def _is_text(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def _is_text_list(typ: pa.DataType) -> bool:
    return (pa.types.is_list(typ) or pa.types.is_large_list(typ)) and _is_text(typ.value_type)


def _values(v: object) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, list | tuple):
        return tuple(str(x) for x in v if x is not None and str(x).strip())
    text = str(v).strip()
    return (text,) if text else ()
