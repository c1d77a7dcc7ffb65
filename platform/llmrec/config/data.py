"""The ``data`` section: where interactions and items come from, their columns and events."""

from __future__ import annotations

from dataclasses import dataclass, field

EVENT_ACTIONS = ("positive", "negative", "ignore")
"""What training can do with an interaction's ``event`` (``data.events``): train on it as a
positive, take it as a negative (never a positive of that user, and an explicit negative
where the loss takes them), or leave it out."""
DEFAULT_EVENTS: dict[str, str] = {
    "interaction": "positive",
    "view": "positive",
    "click": "positive",
    "like": "positive",
    "purchase": "positive",
    "rating": "positive",
    "dislike": "negative",
    "skip": "ignore",
}
"""The documented defaults of ``data.events`` (an event not listed: :data:`OTHER_EVENTS`)."""
OTHER_EVENTS = "positive"
"""What training does with an event that neither ``data.events`` nor the defaults name."""
DATA_COLUMNS: dict[str, tuple[str, ...]] = {
    "interactions": ("user_id", "item_id", "timestamp", "event", "value", "query"),
    "items": ("item_id", "title", "text", "categories"),
    "users": ("user_id",),
}
"""The contract's columns per table (docs/data.md): what ``data.columns`` maps onto."""


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions and items come from and how training examples are built."""

    source: str = "demo"
    """``demo`` (built-in generator), a folder of contract Parquet/CSV (``interactions.*`` and
    ``items.*``), or a MovieLens folder or zip (``movielens:PATH``, or detected by its files)."""
    work_dir: str = "runs/data"
    """Where the validated contract Parquet, the splits and ``rejected/`` are written."""
    demo_users: int = 200
    """Number of users the demo generator writes."""
    demo_items: int = 300
    """Number of items the demo generator writes."""
    demo_seed: int = 7
    """Seed of the demo generator (same seed, same data)."""
    min_core: int = 5
    """Iterative k-core: users and items with fewer interactions are dropped until both hold."""
    max_history: int = 10
    """A user is written as text from this many most recent items."""
    cold_items: float = 0.0
    """Cold-start protocol: this share of the items (after k-core) is held out of training
    entirely; the evaluation reports the users whose test target is one of them."""
    cold_seed: int = 0
    """Seed of the choice of cold items."""
    examples_per_user: int = 4
    """Text design: training examples per user, the most recent positions of the training
    part (0 = all). The sequential design trains on every position."""
    opaque_items: bool = False
    """Replace every item's title and text by its id and drop its categories: a check that
    the model learns from the interactions, not only from the text."""
    events: dict[str, str] = field(default_factory=dict)
    """What training does with each interaction ``event``: ``positive``, ``negative`` or
    ``ignore``; overrides of the defaults (``view``, ``click``, ``like``, ``purchase``,
    ``rating``, ``interaction``: positive; ``dislike``: negative; ``skip``: ignore), e.g.
    ``{skip: negative}``. Events listed nowhere are positive. Event names are matched
    without case and surrounding spaces. See docs/updates.md."""
    columns: dict[str, str | list[str]] = field(default_factory=dict)
    """Contract folders whose columns have other names: contract column -> the file's column,
    e.g. ``{user_id: customer, item_id: sku, timestamp: ts, value: rating, title: name,
    text: [description, bullet_points], categories: category_path}``. ``text`` may list
    several columns, joined in order into the item text (``description: ... bullet_points:
    ...``). A key applies to every file with that contract column (``item_id``: interactions
    and items); ``items.item_id: sku`` to one. Columns named as in the contract need no entry;
    the summary says which column fed which and which were ignored. See docs/data.md."""

    def problems(self) -> list[str]:
        out = []
        known = dict.fromkeys(c for cols in DATA_COLUMNS.values() for c in cols)
        for key, column in self.columns.items():
            table, dot, name = key.rpartition(".")
            tables = [table] if dot else [t for t, cols in DATA_COLUMNS.items() if name in cols]
            if not tables or any(name not in DATA_COLUMNS.get(t, ()) for t in tables):
                out.append(
                    f"data.columns.{key} (column {column!r}): {key!r} is not a contract column "
                    f"(expected one of {', '.join(known)}, or TABLE.COLUMN for one table: "
                    f"{', '.join(DATA_COLUMNS)})"
                )
                continue
            names = column if isinstance(column, list) and name == "text" else [column]
            if not names or not all(isinstance(n, str) and n.strip() for n in names):
                what = "a column name or a list of them" if name == "text" else "a column name"
                out.append(f"data.columns.{key} must be {what}, got {column!r}")
        for event, action in self.events.items():
            if action not in EVENT_ACTIONS:
                choices = ", ".join(repr(a) for a in EVENT_ACTIONS)
                out.append(f"data.events.{event} must be one of {choices}, got {action!r}")
        for name in ("demo_users", "demo_items", "max_history"):
            if getattr(self, name) < 1:
                out.append(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.min_core < 1:
            out.append(f"data.min_core must be >= 1, got {self.min_core}")
        if not 0.0 <= self.cold_items < 1.0:
            out.append(f"data.cold_items must be in [0, 1), got {self.cold_items}")
        if self.examples_per_user < 0:
            out.append(f"data.examples_per_user must be >= 0, got {self.examples_per_user}")
        return out
