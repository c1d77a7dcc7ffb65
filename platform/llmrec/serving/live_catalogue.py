"""The ingress's side of live catalogue changes (:class:`LiveCatalogue`): items posted to
``/admin/items`` embedded with the served version's item tower and recorded with their
vectors, retirements recorded, and a version that starts to be served given a vector for
every live item it lacks. The durable record and each replica's sync:
:mod:`llmrec.serving.catalogue_state`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from llmrec.serving.catalogue_state import CatalogueState, LiveItem

Embed = Callable[[str, list[LiveItem]], Awaitable[np.ndarray]]
"""``(model_uri, items) -> [len(items), dim]`` vectors from that version's item tower."""


@dataclass(frozen=True)
class Outcome:
    """What a catalogue change did, by item id."""

    added: list[str]
    updated: list[str]
    retired: list[str]
    unchanged: list[str]


class LiveCatalogue:
    """The ingress's side: embeds and records additions, records retirements, prepares a
    version that starts to be served.

    Args:
        state: the durable record.
        embed: the served version's item tower (the encoder deployment).
    """

    def __init__(self, state: CatalogueState, embed: Embed, batch: int = 256) -> None:
        self.state = state
        self.embed = embed
        self.batch = batch

    async def add(
        self, model_uri: str, items: Sequence[LiveItem], known: Callable[[str], bool]
    ) -> Outcome:
        """Embed ``items`` with ``model_uri``'s item tower and record them with their
        vectors; ``known`` says which ids the served catalogue already has (updated)."""
        vectors = await self._vectors(model_uri, list(items))
        live = await asyncio.to_thread(self.state.live_ids, [i.item_id for i in items])
        updated = [i.item_id for i in items if i.item_id in live or known(i.item_id)]
        await asyncio.to_thread(self.state.upsert, list(items), model_uri, vectors)
        added = [i.item_id for i in items if i.item_id not in set(updated)]
        return Outcome(added, updated, [], [])

    async def retire(self, item_ids: Sequence[str]) -> Outcome:
        """Retire items; ``unchanged`` lists those that were retired already."""
        fresh, already = await asyncio.to_thread(self.state.retire, list(item_ids))
        return Outcome([], [], fresh, already)

    async def prepare(self, model_uri: str) -> int:
        """Embed every live item that ``model_uri`` has no current vector for (a version
        about to be served: after a swap, a restart); returns how many were embedded."""
        missing = await asyncio.to_thread(self.state.missing, model_uri)
        if not missing:
            return 0
        vectors = await self._vectors(model_uri, [item for item, _ in missing])
        keys = [(item.item_id, seq) for item, seq in missing]
        await asyncio.to_thread(self.state.put_vectors, model_uri, keys, vectors)
        return len(missing)

    async def _vectors(self, model_uri: str, items: list[LiveItem]) -> np.ndarray:
        parts = [
            np.asarray(await self.embed(model_uri, items[i : i + self.batch]), dtype=np.float32)
            for i in range(0, len(items), self.batch)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


__all__ = ["Embed", "LiveCatalogue", "Outcome"]
