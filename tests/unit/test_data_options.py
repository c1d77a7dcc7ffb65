"""Data options applied when a source is read."""

from llmrec.config import DataConfig
from llmrec.data.prepare import load_source, prepare


def test_opaque_items_keep_the_interactions_and_nothing_else_of_the_items(tmp_path):
    cfg = DataConfig(demo_users=30, demo_items=40, opaque_items=True)
    plain = load_source("demo", DataConfig(demo_users=30, demo_items=40))
    raw = load_source("demo", cfg)
    assert raw.interactions.equals(plain.interactions)
    prepared = prepare(raw, tmp_path)
    items = prepared.catalogue.items
    first = prepared.catalogue.ids[0]
    assert items[first].title == f"item {first}"
    assert all(not it.categories and not it.text for it in items.values())
    assert prepared.catalogue.texts()[0] == f"item {first}."
