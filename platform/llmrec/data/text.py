"""How users and items are written as text for the language model.

Training and serving call the same functions, so a model sees the same kind of text in both.
The token budget itself is enforced by the tokenizer (truncation); the most recent items come
first so that truncation cuts the oldest history, never the query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ItemText:
    """What the renderer needs of one catalogue item (slots: a catalogue holds a million)."""

    title: str
    categories: tuple[str, ...] = ()
    text: str | None = None


def render_item(item: ItemText) -> str:
    """``"Title. Categories: a, b. Description"``: the item tower's input."""
    parts = [item.title.strip().rstrip(".") + "."]
    if item.categories:
        parts.append("Categories: " + ", ".join(item.categories) + ".")
    if item.text:
        parts.append(item.text.strip())
    return " ".join(parts)


def render_user(
    history: Sequence[str],
    items: Mapping[str, ItemText],
    query: str | None = None,
    max_history: int = 10,
) -> str:
    """Write a user as text: the free-text query (if any), then recent items, newest first.

    Args:
        history: Item ids in time order (oldest first). Unknown ids are skipped.
        items: The catalogue, by item id.
        query: What the user typed, when there was a query.
        max_history: How many of the most recent items to include.

    Returns:
        e.g. ``"Request: space battles. Recently: Stellar Drift (Science Fiction); ..."``
    """
    recent = [items[i] for i in reversed(history) if i in items][:max_history]
    parts = []
    if isinstance(query, str) and query.strip():  # NaN from pandas counts as no query
        parts.append(f"Request: {query.strip()}.")
    if recent:
        rendered = [
            f"{it.title} ({', '.join(it.categories)})" if it.categories else it.title
            for it in recent
        ]
        parts.append("Recently: " + "; ".join(rendered) + ".")
    return " ".join(parts) if parts else "No history."
