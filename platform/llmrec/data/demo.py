"""Built-in demo data: a seeded catalogue and users whose tastes show in the item text.

Each item belongs to one or two genres and gets a title and description made from that
genre's vocabulary. Each user loves one or two genres (and a pet topic inside one of them)
and mostly interacts with matching items, sometimes after typing a request that names the
topic. A text-based scorer can therefore learn real signal, and an ID-only method can too:
the demo is small but not trivial (15% of interactions are exploration outside the tastes).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from llmrec.data.contract import INTERACTIONS_SCHEMA, ITEMS_SCHEMA

GENRES: dict[str, dict[str, list[str]]] = {
    "Science Fiction": {
        "adj": ["Galactic", "Quantum", "Stellar", "Orbital", "Neon", "Void"],
        "noun": ["Frontier", "Colony", "Signal", "Drift", "Armada", "Protocol"],
        "topic": ["space exploration", "time travel", "artificial minds", "alien contact"],
    },
    "Romance": {
        "adj": ["Summer", "Secret", "Tender", "Moonlit", "Lost", "Second"],
        "noun": ["Letters", "Promise", "Waltz", "Harbor", "Vows", "Garden"],
        "topic": ["first love", "a wedding", "old flames", "a holiday fling"],
    },
    "Cooking": {
        "adj": ["Rustic", "Spicy", "Golden", "Simple", "Coastal", "Midnight"],
        "noun": ["Kitchen", "Skillet", "Pantry", "Bakery", "Feast", "Noodles"],
        "topic": ["baking bread", "street food", "vegetarian dishes", "family recipes"],
    },
    "History": {
        "adj": ["Ancient", "Forgotten", "Imperial", "Medieval", "Iron", "Silent"],
        "noun": ["Empires", "Crowns", "Battlefields", "Dynasties", "Chronicles", "Ruins"],
        "topic": ["the Roman empire", "world wars", "medieval kings", "ancient Egypt"],
    },
    "Mystery": {
        "adj": ["Crimson", "Hidden", "Twelfth", "Shadowed", "Final", "Silent"],
        "noun": ["Clue", "Alibi", "Witness", "Cipher", "Verdict", "Locket"],
        "topic": ["a detective", "a locked room", "a stolen painting", "a cold case"],
    },
    "Travel": {
        "adj": ["Wandering", "Northern", "Hidden", "Island", "Desert", "Alpine"],
        "noun": ["Roads", "Passport", "Trails", "Journeys", "Horizons", "Railways"],
        "topic": ["backpacking", "mountain hikes", "train journeys", "island hopping"],
    },
    "Business": {
        "adj": ["Lean", "Bold", "Scalable", "Disruptive", "Steady", "Global"],
        "noun": ["Startup", "Ledger", "Strategy", "Markets", "Leadership", "Growth"],
        "topic": ["founding a startup", "investing", "negotiation", "managing teams"],
    },
    "Health & Fitness": {
        "adj": ["Strong", "Mindful", "Active", "Balanced", "Endurance", "Daily"],
        "noun": ["Body", "Stride", "Routine", "Breath", "Core", "Habits"],
        "topic": ["running", "yoga", "strength training", "healthy sleep"],
    },
    "Fantasy": {
        "adj": ["Dragon", "Enchanted", "Shattered", "Elven", "Storm", "Runed"],
        "noun": ["Throne", "Sword", "Prophecy", "Realm", "Grimoire", "Citadel"],
        "topic": ["dragons", "wizards", "a quest", "magic schools"],
    },
    "Music": {
        "adj": ["Electric", "Velvet", "Blue", "Analog", "Rhythm", "Jazz"],
        "noun": ["Sessions", "Vinyl", "Anthem", "Chords", "Backstage", "Encore"],
        "topic": ["jazz legends", "rock bands", "learning guitar", "classical composers"],
    },
}
_FORMS = ["novel", "guide", "documentary", "memoir", "series", "collection"]
PROVIDERS = ["Northwind Press", "Blue Owl Media", "Harbor House", "Kite Studios", "Quill & Co"]
"""Who publishes each demo item (an attribute column: ``max_per: {"provider": 2}``)."""
ITEMS_WITH_PROVIDER = ITEMS_SCHEMA.append(pa.field("provider", pa.string()))


@dataclass(frozen=True)
class DemoData:
    """The generated tables, already in the contract."""

    interactions: pa.Table
    items: pa.Table


def generate_demo(
    num_users: int = 200,
    num_items: int = 300,
    seed: int = 7,
    min_events: int = 12,
    max_events: int = 30,
) -> DemoData:
    """Generate a deterministic catalogue and interaction log (same seed, same tables).

    Args:
        num_users: Users to generate.
        num_items: Catalogue size.
        seed: Seed of every random choice.
        min_events: Fewest interactions per user.
        max_events: Most interactions per user.
    """
    rng = np.random.default_rng(seed)
    genres = list(GENRES)
    item_rows, item_genres, item_topics = _items(rng, num_items, genres)
    popularity = rng.zipf(1.6, size=num_items).clip(1, 50).astype(float)
    users, items, stamps, events, values, queries = [], [], [], [], [], []
    start = 1_600_000_000
    for u in range(num_users):
        loves = list(rng.choice(len(genres), size=rng.integers(1, 3), replace=False))
        pet_topic = rng.choice(GENRES[genres[loves[0]]]["topic"])
        liked = np.array([any(g in loves for g in gs) for gs in item_genres])
        weight = popularity * np.where(liked, 1.0, 0.0)
        weight = weight * np.where(np.array(item_topics) == pet_topic, 3.0, 1.0)
        t = start + int(rng.integers(0, 86_400 * 30))
        seen: set[int] = set()
        for _ in range(int(rng.integers(min_events, max_events + 1))):
            explore = rng.random() < 0.15
            w = popularity if explore else weight
            unseen = np.ones(num_items, dtype=bool)
            unseen[list(seen)] = False
            w = np.where(unseen, w, 0.0)
            if w.sum() == 0:  # tastes exhausted: explore
                w = np.where(unseen, popularity, 0.0)
            i = int(rng.choice(num_items, p=w / w.sum()))
            seen.add(i)
            t += int(rng.integers(3_600, 86_400 * 3))
            users.append(f"u{u:04d}")
            items.append(item_rows[i]["item_id"])
            stamps.append(t)
            events.append("rating")
            values.append(float(rng.integers(4, 6) if liked[i] else rng.integers(1, 4)))
            asked = not explore and rng.random() < 0.2
            queries.append(f"something about {item_topics[i]}" if asked else None)
    interactions = pa.table(
        {
            "user_id": users,
            "item_id": items,
            "timestamp": stamps,
            "event": events,
            "value": values,
            "query": queries,
        },
        schema=INTERACTIONS_SCHEMA,
    )
    items = pa.Table.from_pylist(item_rows, ITEMS_WITH_PROVIDER)
    return DemoData(interactions=interactions, items=items)


def _items(
    rng: np.random.Generator, num_items: int, genres: list[str]
) -> tuple[list[dict], list[list[int]], list[str]]:
    rows: list[dict] = []
    item_genres: list[list[int]] = []
    topics: list[str] = []
    titles: set[str] = set()
    for i in range(num_items):
        g = [int(rng.integers(len(genres)))]
        if rng.random() < 0.3:
            g.append(int((g[0] + rng.integers(1, len(genres))) % len(genres)))
        vocab = GENRES[genres[g[0]]]
        topic = str(rng.choice(vocab["topic"]))
        title = f"{rng.choice(vocab['adj'])} {rng.choice(vocab['noun'])}"
        while title in titles:  # readable and unique: add a volume number
            title = f"{title.split(' Vol.')[0]} Vol. {len(titles) % 9 + 2}"
            if title in titles:
                title = f"{title} {i}"
        titles.add(title)
        form = str(rng.choice(_FORMS))
        text = f"A {form} about {topic}."
        if len(g) > 1:
            second = genres[g[1]]
            text += f" With a touch of {second.lower()}: {rng.choice(GENRES[second]['topic'])}."
        rows.append(
            {
                "item_id": f"i{i:04d}",
                "title": title,
                "text": text,
                "categories": [genres[k] for k in g],
                # from the title, not the generator: the demo's other columns stay as they were
                "provider": PROVIDERS[zlib.crc32(title.encode()) % len(PROVIDERS)],
            }
        )
        item_genres.append(g)
        topics.append(topic)
    return rows, item_genres, topics
