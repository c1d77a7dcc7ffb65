from collections import Counter

from llmrec.data.catalogue import Catalogue
from llmrec.data.demo import generate_demo
from llmrec.data.text import ItemText, render_item, render_user


def test_demo_is_deterministic_and_in_contract():
    a, b = generate_demo(50, 80, seed=3), generate_demo(50, 80, seed=3)
    assert a.interactions.equals(b.interactions) and a.items.equals(b.items)
    assert not a.interactions.equals(generate_demo(50, 80, seed=4).interactions)
    assert a.items.num_rows == 80
    assert a.items.column("item_id").unique().to_pylist() == a.items.column("item_id").to_pylist()
    assert len(set(a.items.column("title").to_pylist())) == 80


def test_demo_users_show_their_taste_in_the_item_text():
    demo = generate_demo(100, 200, seed=1)
    cat = Catalogue.from_table(demo.items)
    df = demo.interactions.to_pandas()
    shares = []
    for _, g in df.groupby("user_id"):
        genres = Counter(c for i in g["item_id"] for c in cat.items[i].categories)
        shares.append(genres.most_common(1)[0][1] / len(g))
    # one genre covers most of what a user picks: a text model can see the taste
    assert sum(shares) / len(shares) > 0.5


def test_render_user_newest_first_with_query_and_budget():
    items = {
        "a": ItemText("Alpha", ("X",)),
        "b": ItemText("Beta"),
        "c": ItemText("Gamma", ("Y", "Z")),
    }
    text = render_user(["a", "b", "c"], items, query="  fast cars ", max_history=2)
    assert text == "Request: fast cars. Recently: Gamma (Y, Z); Beta."
    assert render_user([], items) == "No history."
    assert render_item(ItemText("Alpha.", ("X",), "A story.")) == "Alpha. Categories: X. A story."
