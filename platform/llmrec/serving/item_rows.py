"""The ranker's items by row (:class:`ItemRows`): the version's catalogue in its own order,
then the items added while serving (:mod:`llmrec.serving.catalogue_state`) in the order
they came, and which of them are retired. Rows never move: an updated item keeps its row,
and a retired one keeps it too (it is never answered).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np

from llmrec.data.catalogue import Catalogue
from llmrec.serving.catalogue_state import LiveItem


class ItemRows:
    """Item ids by row (``ids``), rows by id (``index``), titles by row, the live items by
    id (``live``) and a retired flag per row (``dead``)."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.ids = list(catalogue.ids)
        self.index = dict(catalogue.index)
        self.titles = [catalogue.title(i) for i in self.ids]
        self.live: dict[str, LiveItem] = {}
        self.dead = np.zeros(len(self.ids), dtype=bool)  # retired items

    def __len__(self) -> int:
        return len(self.ids)

    def of(self, ids: Iterable[str]) -> list[int]:
        """The rows of ``ids``, in order, leaving out the ids it does not know."""
        return [self.index[i] for i in ids if i in self.index]

    def add(self, items: Sequence[LiveItem]) -> tuple[list[int], list[int]]:
        """Give the new ``items`` the next rows and the known ones their new titles; returns
        the positions in ``items`` of the new ones and of the known ones."""
        new = [k for k, i in enumerate(items) if i.item_id not in self.index]
        old = [k for k, i in enumerate(items) if i.item_id in self.index]
        for k in new:
            self.index[items[k].item_id] = len(self.ids)
            self.ids.append(items[k].item_id)
            self.titles.append(items[k].title)
        for k in old:
            self.titles[self.index[items[k].item_id]] = items[k].title
        return new, old

    def record(self, item: LiveItem) -> set[str]:
        """Keep ``item`` as a live item; returns the categories it had before (none for a
        new item)."""
        before = self.live.get(item.item_id) or self.catalogue.items.get(item.item_id)
        self.live[item.item_id] = item
        return set(before.categories) if before is not None else set()

    def retire(self, item_ids: Collection[str]) -> None:
        """Flag as retired exactly the rows of ``item_ids`` (every retired id, not only the
        newly retired)."""
        self.dead = np.zeros(len(self.ids), dtype=bool)
        self.dead[np.array(self.of(item_ids), dtype=np.int64)] = True

    def grown(self) -> Catalogue:
        """The version's catalogue with the live items, in row order (live items have no
        attribute values)."""
        cat = self.catalogue
        texts = {**cat.items, **{i: item.item_text() for i, item in self.live.items()}}
        attributes = {
            name: {**values, **{i: () for i in self.live if i not in values}}
            for name, values in cat.attributes.items()
        }
        return Catalogue(tuple(self.ids), texts, attributes)
