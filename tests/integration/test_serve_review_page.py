"""The review page (GET /ui) and what the API gained for it, on the server shared with
test_serve_graph.py (tests/integration/conftest.py; this module runs last): requests that
name a version (token, 404, outside experiments and logs), list measures, user search, the
version list; then a real headless Chromium that picks a user, compares two registered
versions, moves the diversity slider and renders a sample, with the keyboard, checking that
what it shows is what the API answered and that looking changed no count, log or history.
Screenshots of each view are saved under runs/test-artifacts/."""

import contextlib
import os
import sqlite3
from pathlib import Path

import mlflow
import pytest
import requests
from llmrec.config import RegistryConfig
from llmrec.registry import aliases, runs

from tests.conftest import REPO
from tests.integration.conftest import SERVE_TOKEN
from tests.integration.test_serve_graph_experiments import _rescaled

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {SERVE_TOKEN}"}
MODEL = "llmrec-scorer"
CHAMPION = f"models:/{MODEL}@champion"
ARTIFACTS = REPO / "runs" / "test-artifacts"


@pytest.fixture(scope="module")
def review(server):
    """A second version of the served model (item vectors rescaled: other lists), registered
    with the alias @challenger; the champion stays version 1."""
    mlflow.set_tracking_uri(server["trained"]["tracking_uri"])
    cfg = RegistryConfig(tracking_uri=server["trained"]["tracking_uri"], model_name=MODEL)
    other = _rescaled(server["bundle"], server["root"] / "review-v2", 7)
    common = dict(params={}, history=[], metrics={}, model_card="card", tags={})
    v2 = runs.log_and_register(cfg, run_name="review-v2", bundle_dir=other, **common)
    mlflow.MlflowClient().set_registered_model_alias(MODEL, "challenger", v2.version)
    assert aliases.current_champion(MODEL) == "1"
    user = sorted(server["bundle"].histories)[0]
    return {**server, "v2": v2.version, "challenger": f"models:/{MODEL}@challenger", "user": user}


def ask(review, body, auth=True):
    headers = AUTH if auth else {}
    return requests.post(f"{review['url']}/recommend", json=body, headers=headers, timeout=120)


def impressions(review) -> int:
    with contextlib.closing(sqlite3.connect(review["root"] / "impressions.sqlite")) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM impressions").fetchone()[0])


def test_a_request_may_name_a_version_with_the_token(review):
    body = {"user_id": review["user"], "k": 10}
    served = ask(review, body, auth=False)
    assert served.status_code == 200 and served.json()["model_version"] == "1"
    refused = ask(review, {**body, "model_uri": review["challenger"]}, auth=False)
    assert refused.status_code == 401, refused.text
    assert "bearer token" in refused.json()["detail"][0]["msg"]

    before = impressions(review)
    named = ask(review, {**body, "model_uri": review["challenger"]})
    assert named.status_code == 200, named.text
    assert named.json()["model_version"] == review["v2"]
    assert "variant" not in named.json()  # no experiment answered it
    assert [i["item_id"] for i in named.json()["items"]] != [
        i["item_id"] for i in served.json()["items"]
    ]
    pinned = ask(review, {**body, "model_uri": f"models:/{MODEL}/{review['v2']}"})
    assert pinned.json()["items"] == named.json()["items"]  # the alias and its version agree
    assert impressions(review) == before  # named versions are never logged

    missing = ask(review, {**body, "model_uri": f"models:/{MODEL}/99"})
    assert missing.status_code == 404, missing.text
    assert missing.json()["detail"][0]["loc"] == ["body", "model_uri"]
    assert "does not resolve" in missing.json()["detail"][0]["msg"]
    malformed = ask(review, {**body, "model_uri": "champion"})
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["loc"] == ["body", "model_uri"]


def test_list_measures_come_with_the_answer_when_asked(review):
    """(Their values against the offline functions: tests/unit/test_serving_rerank.py.)"""
    body = {"user_id": review["user"], "k": 10, "measures": True}
    answer = ask(review, body).json()
    m = answer["measures"]
    assert set(m) == {"diversity", "tail_share", "mean_popularity", "categories", "miscalibration"}
    assert 0.0 <= m["tail_share"] <= 1.0 and m["categories"] >= 1 and m["mean_popularity"] > 0
    assert m["diversity"] is not None and 0.0 <= m["diversity"] <= 2.0
    assert m["miscalibration"] is not None and m["miscalibration"] >= 0.0
    assert "measures" not in ask(review, {**body, "measures": False}).json()


def test_users_can_be_searched_and_sampled(review):
    url = review["url"]
    assert requests.get(f"{url}/users", timeout=30).status_code == 401
    known = sorted(review["bundle"].histories)
    prefix = known[0][:1]
    found = requests.get(f"{url}/users", params={"prefix": prefix}, headers=AUTH, timeout=30)
    assert found.status_code == 200, found.text
    users = found.json()["users"]
    assert users and users == sorted(users) and all(u.startswith(prefix) for u in users)
    assert set(users) <= set(known) | set(_feedback_users(review))
    sample = {"sample": 5, "seed": 3}
    a = requests.get(f"{url}/users", params=sample, headers=AUTH, timeout=30).json()["users"]
    b = requests.get(f"{url}/users", params=sample, headers=AUTH, timeout=30).json()["users"]
    assert a == b and len(set(a)) == 5 and set(a) <= set(known)
    bad = requests.get(f"{url}/users", params={"limit": 0}, headers=AUTH, timeout=30)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "limit"]


def _feedback_users(review) -> set[str]:
    with contextlib.closing(sqlite3.connect(review["settings"]["history_db"])) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT user_id FROM interactions")}


def test_the_registered_versions_are_listed_with_their_aliases(review):
    url = review["url"]
    listed = requests.get(f"{url}/admin/versions", headers=AUTH, timeout=30)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["model"] == MODEL and body["follows"] == CHAMPION and body["model_version"] == "1"
    versions = {v["version"]: v for v in body["versions"]}
    assert body["versions"][0]["version"] == review["v2"]  # newest first
    assert "champion" in versions["1"]["aliases"]
    assert "challenger" in versions[review["v2"]]["aliases"]
    other = requests.get(
        f"{url}/admin/versions", params={"model": "nope"}, headers=AUTH, timeout=30
    )
    assert other.status_code == 404 and "nope" in other.json()["detail"][0]["msg"]
    assert requests.get(f"{url}/admin/versions", timeout=30).status_code == 401


def test_history_answers_carry_titles(review):
    r = requests.get(f"{review['url']}/users/{review['user']}/history", headers=AUTH, timeout=30)
    body = r.json()
    catalogue = review["bundle"].catalogue
    assert [i["item_id"] for i in body["items"]] == body["history"]
    assert [i["title"] for i in body["items"]] == [catalogue.title(i) for i in body["history"]]


def test_page_files_are_served_without_outside_sources(review):
    page = requests.get(f"{review['url']}/ui", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text
    for name in ("review.js", "review.css"):
        asset = requests.get(f"{review['url']}/ui/{name}", timeout=30)
        assert asset.status_code == 200 and "https://" not in asset.text
    missing = requests.get(f"{review['url']}/ui/secrets.txt", timeout=30)
    assert missing.status_code == 404 and "secrets.txt" in missing.json()["detail"][0]["msg"]


# -- the page in a real browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from llmrec.serving.http.pages import CHROMIUM, CHROMIUM_ARGS

    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (make setup does)")
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        yield launched
        launched.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"review-{name}.png"
    page.screenshot(path=str(path))
    return path


def ready(page) -> None:
    page.wait_for_selector("body[data-state=ready]", timeout=120_000)


def answered(page, path: str):
    """Waits for the page's answer from ``path`` (the page's content security policy rules
    out Playwright's string predicates: they are eval'd)."""
    return page.expect_response(lambda r: r.url.split("?")[0].endswith(path), timeout=120_000)


def rendered(page, column: str) -> tuple[list[str], list[str], list[str]]:
    """(item ids, titles, explanation sentences) of a rendered list."""
    rows = page.locator(f"#{column} li[data-item-id]")
    return (
        [rows.nth(i).get_attribute("data-item-id") or "" for i in range(rows.count())],
        page.locator(f"#{column} li[data-item-id] .title").all_text_contents(),
        page.locator(f"#{column} li[data-item-id] .why").all_text_contents(),
    )


def counts_of(review) -> dict:
    status = requests.get(f"{review['url']}/admin/experiment", headers=AUTH, timeout=30).json()
    return {v["name"]: (v["requests"], v["impressions"], v["users"]) for v in status["variants"]}


def test_the_page_shows_what_the_api_answers_and_changes_nothing(review, browser):
    url, user = review["url"], review["user"]
    spec = {
        "name": "review-check",
        "variants": [
            {"name": "control", "model_uri": CHAMPION, "weight": 0.5},
            {"name": "treatment", "model_uri": review["challenger"], "weight": 0.5},
        ],
    }
    started = requests.put(f"{url}/admin/experiment", json=spec, headers=AUTH, timeout=120)
    assert started.status_code == 200, started.text
    try:
        for k in range(4):  # some counted traffic, so that "unchanged" means something
            assert ask(review, {"user_id": f"{user}", "k": 5 + k}, auth=False).status_code == 200
        before = (counts_of(review), impressions(review), _history(review))
        _review_with_the_keyboard(review, browser)
        after = (counts_of(review), impressions(review), _history(review))
        assert after == before
    finally:
        requests.delete(f"{url}/admin/experiment", headers=AUTH, timeout=120)


def _history(review) -> dict:
    r = requests.get(f"{review['url']}/users/{review['user']}/history", headers=AUTH, timeout=30)
    return r.json()


def _review_with_the_keyboard(review, browser) -> None:
    url, user = review["url"], review["user"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/ui")
    page.wait_for_selector("body[data-state=error]", timeout=60_000)
    assert "API token" in page.text_content("#status")  # the server has a token

    # every control has a name a screen reader reads
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(c => !(c.labels && c.labels.length) && !c.getAttribute('aria-label')
                    && !c.textContent.trim()).map(c => c.id || c.outerHTML)"""
    )
    assert unnamed == []

    page.focus("#token")
    page.keyboard.type(SERVE_TOKEN)
    with answered(page, "/admin/versions"):
        page.keyboard.press("Enter")
    page.wait_for_selector("#version-b option:nth-child(3)", state="attached")
    assert page.evaluate("sessionStorage.length") == 1 and page.evaluate("localStorage.length") == 0

    # one user, version A (the app's champion)
    page.focus("#user")
    page.keyboard.type(user)
    with answered(page, "/history"):
        page.keyboard.press("Enter")
    ready(page)
    answer = ask(review, {"user_id": user, "k": 10, "explain": True, "model_uri": CHAMPION}).json()
    ids, titles, whys = rendered(page, "list-a")
    assert ids == [i["item_id"] for i in answer["items"]]
    assert titles == [i["title"] for i in answer["items"]]
    assert whys == [i["explanation"]["text"] for i in answer["items"]]
    history = _history(review)["items"]
    shown = page.locator("#history-list li .title").all_text_contents()
    assert shown == [i["title"] for i in reversed(history)]  # newest first
    assert page.locator("#list-a li[data-item-id] .bar").count() == len(ids)
    assert page.locator("#list-a .measures dd").count() == 5
    shot(page, "user")

    # side by side with @challenger
    with answered(page, "/history"):
        page.select_option("#version-b", review["challenger"])
    ready(page)
    other = ask(review, {"user_id": user, "k": 10, "model_uri": review["challenger"]}).json()
    b_ids, b_titles, _ = rendered(page, "list-b")
    assert b_ids == [i["item_id"] for i in other["items"]]
    assert b_titles == [i["title"] for i in other["items"]]
    shared = set(ids) & set(b_ids)
    assert page.locator("#list-b .mark.both").count() == len(shared)
    assert page.locator("#list-b .mark.only").count() == len(b_ids) - len(shared)
    assert f"overlap@10 {len(shared) / 10:.2f}" in page.text_content("#status")
    shot(page, "side-by-side")

    # the diversity slider re-queries: the lists are the API's with that diversity
    page.focus("#diversity")
    with answered(page, "/history"):
        page.keyboard.press("End")
    ready(page)
    assert page.text_content("#diversity-out") == "1.00"
    diverse = ask(
        review,
        {"user_id": user, "k": 10, "diversity": 1.0, "model_uri": CHAMPION},
    ).json()
    assert rendered(page, "list-a")[0] == [i["item_id"] for i in diverse["items"]] != ids
    shot(page, "diversity")

    # a sample of users: one row each, overlap@10 per row and overall
    page.focus("#sample")
    page.keyboard.press("Enter")
    page.wait_for_selector("#sample-view:not([hidden])", timeout=120_000)
    ready(page)
    rows = page.locator("#sample-table tbody tr")
    assert rows.count() == min(20, len(review["bundle"].histories))
    overlaps = [float(t) for t in page.locator("#sample-table td.num").all_text_contents()]
    assert all(0.0 <= o <= 1.0 for o in overlaps)
    summary = page.text_content("#sample-summary")
    assert f"mean overlap@10 {sum(overlaps) / len(overlaps):.2f}" in summary
    shot(page, "sample")
    page.close()
