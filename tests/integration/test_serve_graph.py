"""The Ray Serve graph over real HTTP, serving the champion registered by the finetune job:
requests and every class of bad input (one error shape), non-ASCII ids, filters, diversity,
feedback (durable, reflected in the next answer), the token check, conformance to its own
OpenAPI schema (schemathesis), a killed ingress, and a model swap under concurrent load. The
`server` fixture (tests/integration/conftest.py) is shared with test_serve_graph_experiments.py."""

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from llmrec.api.errors import ErrorBody
from llmrec.config import RegistryConfig
from llmrec.experiments.impressions import ImpressionLog, read_log
from llmrec.registry import aliases, runs
from llmrec.registry.bundle import ModelBundle
from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, RecommendRequest
from llmrec.serving.history import HistoryStore

from tests.integration.conftest import SERVE_TOKEN

pytestmark = pytest.mark.slow
TOKEN = SERVE_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post(server, body, path="/recommend", **kw):
    return requests.post(f"{server['url']}{path}", json=body, timeout=60, **kw)


def ids_of(response):
    return [i["item_id"] for i in response.json()["items"]]


def test_known_user_gets_k_unseen_items_from_the_champion(server):
    user, seen = next(iter(server["bundle"].histories.items()))
    r = post(server, {"user_id": user, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "1"
    ids = ids_of(r)
    assert len(ids) == 7 == len(set(ids))
    assert not set(ids) & set(seen)
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    catalogue = server["bundle"].catalogue
    assert [i["title"] for i in body["items"]] == [catalogue.title(i) for i in ids]


def test_answer_equals_the_bare_model_with_the_versions_hybrid(server):
    bundle = server["bundle"]
    req = {"history": list(bundle.catalogue.ids[:4]), "query": "castles", "k": 10}
    encoder = QueryEncoder(bundle)  # the query is read with the version's model, as served
    query = QueryBuilder(bundle, parser=encoder.parser()).build(RecommendRequest(**req))
    vec = encoder.encode([query])[0]
    expected = [i.item_id for i in CandidateRanker(bundle).rank(vec, query)]
    assert ids_of(post(server, req)) == expected
    weights = bundle.hybrid.weights
    assert (weights.cf, weights.popularity) != (0.0, 0.0) or weights.llm == 1.0


def test_ranking_a_group_answers_each_request_as_alone(server):
    # the ingress sends concurrent requests to the ranker together
    bundle = server["bundle"]
    ids, user = bundle.catalogue.ids, list(bundle.histories)[2]
    builder, ranker = QueryBuilder(bundle), CandidateRanker(bundle)
    requests = [
        {"history": list(ids[:4]), "query": "castles", "k": 10},
        {"user_id": user, "k": 6, "categories": ["Fantasy"]},
        {"history": list(ids[5:8]), "k": 8, "exclude": list(ids[10:40]), "diversity": 0.5},
        {"query": "a quiet book about the sea", "k": 3},
    ]
    queries = [builder.build(RecommendRequest(**r)) for r in requests]
    vectors = QueryEncoder(bundle).encode(queries)
    together = ranker.rank_many(vectors, queries)
    alone = [ranker.rank(v, q) for v, q in zip(vectors, queries, strict=True)]
    assert [[i.item_id for i in a] for a in together] == [[i.item_id for i in a] for a in alone]
    assert [len(a) for a in together] == [10, 6, 8, 3]


def test_cached_vectors_of_known_users_give_the_encoders_answers(server):
    """Known users' query vectors are precomputed when the version loads and served from
    the ingress's cache; their top-10 equal those of the same history sent as a history
    (always encoded), before and after the user's feedback changes that history."""
    bundle = server["bundle"]
    deadline = time.time() + 120
    while time.time() < deadline:
        ready = requests.get(f"{server['url']}/readyz", timeout=30).json()
        if ready["cached_users"] >= len(bundle.histories):
            break
        time.sleep(1)
    assert ready["cached_users"] >= len(bundle.histories)
    store = HistoryStore(server["settings"]["history_db"])
    users = [u for u in list(bundle.histories)[10:30] if not store.events(u)]
    for user in users:
        cached = ids_of(post(server, {"user_id": user, "k": 10}))
        history = list(store.user(user).history)
        assert cached == ids_of(post(server, {"history": history, "k": 10})), user
    user = users[0]
    event = {"user_id": user, "item_id": cached_first(server, user), "event": "like"}
    assert post(server, event, "/feedback", headers=AUTH).status_code == 200
    history = list(store.user(user).history)
    assert history[-1] == event["item_id"]
    assert ids_of(post(server, {"user_id": user, "k": 10})) == ids_of(
        post(server, {"history": history, "k": 10})
    )


def cached_first(server, user):
    return ids_of(post(server, {"user_id": user, "k": 1}))[0]


def test_history_and_query_request(server):
    catalogue = server["bundle"].catalogue
    history = list(catalogue.ids[:3])
    r = post(server, {"history": history, "query": "dragons and wizards", "k": 5})
    assert r.status_code == 200, r.text
    ids = ids_of(r)
    assert len(ids) == 5 and not set(ids) & set(history)
    # the query matters: the answer differs from the same history without it
    assert ids_of(post(server, {"history": history, "k": 5})) != ids


def test_exclude_and_category_filters(server):
    bundle = server["bundle"]
    user = list(bundle.histories)[1]
    first = ids_of(post(server, {"user_id": user, "k": 5}))
    again = ids_of(post(server, {"user_id": user, "k": 5, "exclude": first[:2]}))
    assert not set(again) & set(first[:2]) and again[:3] == first[2:5]
    r = post(server, {"user_id": user, "k": 8, "categories": ["Fantasy", "Travel"]})
    assert r.status_code == 200, r.text
    for item in ids_of(r):
        assert {"Fantasy", "Travel"} & set(bundle.catalogue.items[item].categories)


def test_diversity_knob_spreads_the_list_over_categories(server):
    bundle = server["bundle"]
    cats = bundle.catalogue.items

    def genres(ids):
        return len({c for i in ids for c in cats[i].categories})

    user = list(bundle.histories)[2]
    plain = ids_of(post(server, {"user_id": user, "k": 10, "diversity": 0.0}))
    diverse = ids_of(post(server, {"user_id": user, "k": 10, "diversity": 0.8}))
    assert len(diverse) == 10 == len(set(diverse))
    assert diverse[0] == plain[0]  # the best item stays first
    assert genres(diverse) > genres(plain)


def test_calibration_tail_share_and_caps_per_request(server):
    from llmrec.ranking import long_tail
    from llmrec.ranking.measures import miscalibration
    from llmrec.ranking.rerank import category_distribution

    bundle = server["bundle"]
    cat, index = bundle.catalogue, bundle.catalogue.index
    user, seen = list(bundle.histories.items())[3]
    plain = ids_of(post(server, {"user_id": user, "k": 10}))
    body = {"user_id": user, "k": 10, "tail_share": 0.5, "max_per": {"provider": 2}}
    r = post(server, body)
    assert r.status_code == 200, r.text
    shaped = ids_of(r)
    assert len(shaped) == 10 == len(set(shaped)) and not set(shaped) & set(seen)
    tail = long_tail(bundle.hybrid.popularity_counts)
    assert sum(tail[index[i]] for i in shaped) >= 5
    providers = [cat.attributes["provider"][i][0] for i in shaped]
    assert max(providers.count(p) for p in set(providers)) <= 2  # 5 providers, 10 slots
    # calibration: the list's genre mix moves toward the user's history
    genres = category_distribution(cat.category_vectors())
    history = [[index[i] for i in seen]]
    calibrated = ids_of(post(server, {"user_id": user, "k": 10, "calibration": 0.8}))

    def kl(ids):
        return miscalibration(np.array([[index[i] for i in ids]]), history, genres)

    assert kl(calibrated) < kl(plain)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"user_id": "no-such-user"}, 404, "unknown user_id 'no-such-user'"),
        ({"k": 5}, 422, "give a user_id, a non-empty history or a query"),
        ({"query": "x", "k": 0}, 422, "greater than or equal to 1"),
        ({"query": "x", "k": 101}, 422, "less than or equal to 100"),
        ({"query": "x" * 1001}, 422, "at most 1000 characters"),
        ({"history": ["i0001"] * 201}, 422, "at most 200 items"),
        ({"history": ["nope", "i0001"]}, 404, "unknown item ids in history: 'nope'"),
        ({"query": "x", "exclude": ["gone"]}, 404, "unknown item ids in exclude: 'gone'"),
        ({"query": "x", "categories": ["Polka"]}, 404, "unknown categories: 'Polka' (known: "),
        ({"query": " \n"}, 422, "give a user_id, a non-empty history or a query"),
        ({"query": "x", "k": "5"}, 422, "valid integer"),
        ({"query": "x", "diversity": 2}, 422, "less than or equal to 1"),
        ({"query": "x", "calibration": -0.5}, 422, "greater than or equal to 0"),
        ({"query": "x", "tail_share": 1.5}, 422, "less than or equal to 1"),
        ({"query": "x", "explore": -0.1}, 422, "greater than or equal to 0"),
        ({"query": "x", "explore": 0.6}, 422, "less than or equal to 0.5"),
        ({"query": "x", "max_per": {"provider": 0}}, 422, "greater than or equal to 1"),
        (
            {"query": "x", "max_per": {"colour": 2}},
            404,
            "unknown attributes in max_per: 'colour' (known: categories, provider)",
        ),
        ({"query": "x", "colour": "red"}, 422, "Extra inputs are not permitted"),
        ({"user_id": "u0001", "history": ["i0001"]}, 422, "either user_id or history"),
        ({"query": "x", "explain": "yes"}, 422, "valid boolean"),
        ({"query": "x", "strict": 1}, 422, "valid boolean"),
        ({"query": "x", "parse_query": None}, 422, "valid boolean"),
        ({"query": "nothing romantic " * 60}, 422, "at most 1000 characters"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_why(server, body, status, message):
    r = post(server, body)
    assert r.status_code == status
    errors = ErrorBody.model_validate(r.json()).detail  # the one documented shape
    assert any(message in e.msg for e in errors), r.text


def test_a_query_is_read_into_constraints_that_rank(server):
    """ "a mystery but nothing romantic": Mystery wanted, Romance filtered out of the top 10,
    alone and with a user's history; the answer says how the query was read."""
    bundle = server["bundle"]
    cats = bundle.catalogue.items
    user = list(bundle.histories)[5]

    def mysteries(ids):
        return sum("Mystery" in cats[i].categories for i in ids)

    for body, least in (
        ({"query": "a mystery but nothing romantic", "k": 10}, 7),
        # the user's history weighs as much as the request (request_weights): fewer, but more
        ({"user_id": user, "query": "A mystery, but nothing romantic!", "k": 10}, 1),
    ):
        r = post(server, body)
        assert r.status_code == 200, r.text
        read = r.json()["understood"]
        assert read["categories"] == ["Mystery"] and read["without"] == ["Romance"]
        assert read["text"].lower().startswith("a mystery") and read["strict"] is False
        ids = ids_of(r)
        assert len(ids) == 10 and not any("Romance" in cats[i].categories for i in ids)
        unparsed = ids_of(post(server, {**body, "parse_query": False}))
        assert mysteries(ids) >= max(least, mysteries(unparsed) + 1)  # boosted
    strict = post(server, {"query": "a mystery", "strict": True, "k": 10})
    assert all("Mystery" in cats[i].categories for i in ids_of(strict))
    title = bundle.catalogue.title(bundle.catalogue.ids[12])
    r = post(server, {"query": f"something like {title.lower()}", "k": 10})
    like = r.json()["understood"]["like"]
    assert like == [{"item_id": bundle.catalogue.ids[12], "title": title}]
    assert bundle.catalogue.ids[12] not in ids_of(r)
    off = post(server, {"query": "a mystery but nothing romantic", "parse_query": False})
    assert off.status_code == 200 and "understood" not in off.json()


def test_explanations_add_up_to_the_score_and_name_the_history(server):
    bundle = server["bundle"]
    user, seen = list(bundle.histories.items())[4]
    plain = post(server, {"user_id": user, "k": 5})
    assert all("explanation" not in i for i in plain.json()["items"])  # off by default
    r = post(server, {"user_id": user, "k": 5, "explain": True, "query": "no romance"})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 5
    for item in items:
        why = item["explanation"]
        assert sum(why["parts"].values()) == pytest.approx(item["score"], abs=1e-3)
        assert {b["item_id"] for b in why["because"]} <= set(seen)
        assert "not Romance" in why["matched"] and why["text"].endswith(".")
    assert any(i["explanation"]["because"] for i in items)
    again = post(server, {"user_id": user, "k": 5, "explain": True})
    assert [i["item_id"] for i in again.json()["items"]] == ids_of(plain)


def test_non_ascii_ids_and_text_are_ordinary_input(server):
    # the request counter was tagged with the raw path: any non-ASCII user id answered 500
    for user in ("%C3%88ve", "%E7%94%A8%E6%88%B7%E4%B8%80"):  # Ève, 用户一
        r = requests.get(f"{server['url']}/users/{user}/history", headers=AUTH, timeout=30)
        assert r.status_code == 404, r.text
        (error,) = ErrorBody.model_validate(r.json()).detail
        assert error.loc == ["path", "user_id"] and error.type == "not_found"
    r = post(server, {"user_id": "用户一"})
    assert r.status_code == 404 and "unknown user_id '用户一'" in r.json()["detail"][0]["msg"]
    r = post(server, {"query": "一本关于龙的书", "k": 3})
    assert r.status_code == 200 and len(ids_of(r)) == 3
    item = server["bundle"].catalogue.ids[9]
    event = {"user_id": "用户二", "item_id": item, "query": "龙"}
    assert post(server, event, "/feedback", headers=AUTH).status_code == 200
    r = requests.get(f"{server['url']}/users/用户二/history", headers=AUTH, timeout=30)
    assert r.status_code == 200 and r.json()["history"] == [item]


def test_malformed_json_and_oversized_bodies(server):
    r = requests.post(
        f"{server['url']}/recommend",
        data="{not json",
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 422 and "JSON decode error" in r.text
    r = requests.post(
        f"{server['url']}/recommend",
        data='{"query": "' + "x" * 70000 + '"}',
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413
    assert "request body is 70013 bytes; the limit is 32768" in r.text  # the setting holds
    r = requests.post(f"{server['url']}/recommend", data="query=x", timeout=60)  # a form
    assert r.status_code == 415 and r.json()["detail"][0]["type"] == "unsupported_media_type"


def test_feedback_needs_the_token(server):
    item = server["bundle"].catalogue.ids[0]
    event = {"user_id": "u0001", "item_id": item}
    assert post(server, event, "/feedback").status_code == 401
    r = post(server, event, "/feedback", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "bearer token" in r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert requests.post(f"{server['url']}/admin/reload", timeout=30).status_code == 401
    assert requests.get(f"{server['url']}/users/u0001/history", timeout=30).status_code == 401
    # reading recommendations stays open
    assert post(server, {"user_id": "u0001"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"user_id": "u0001", "item_id": "zzz"}, 404, "unknown item ids: 'zzz'"),
        ({"user_id": "u0001", "item_id": "i0001", "event": "teleport"}, 422, "Input should be"),
        ({"user_id": "u0001", "item_id": "i0001", "value": float("nan")}, 422, "finite number"),
        ({"user_id": "u0001", "item_id": "i0001", "value": "1"}, 422, "valid number"),
        ({"events": []}, 422, "at least 1 item"),
        ({"user_id": "", "item_id": "i0001"}, 422, "at least 1 character"),
    ],
)
def test_bad_feedback_gets_a_4xx(server, body, status, message):
    r = requests.post(  # json.dumps writes NaN, which `requests` refuses to send
        f"{server['url']}/feedback",
        data=json.dumps(body),
        headers={**AUTH, "content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == status and message in r.text
    ErrorBody.model_validate(r.json())


def test_feedback_changes_the_next_recommendation(server):
    bundle = server["bundle"]
    user = list(bundle.histories)[3]
    builder = QueryBuilder(bundle, HistoryStore(server["settings"]["history_db"]))
    history_before = builder.build(RecommendRequest(user_id=user)).history
    before = ids_of(post(server, {"user_id": user, "k": 5}))
    r = post(
        server,
        {"user_id": user, "item_id": before[0], "event": "click", "query": "more like it"},
        "/feedback",
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    after = ids_of(post(server, {"user_id": user, "k": 5}))
    assert before[0] not in after  # the clicked item is masked
    history_after = builder.build(RecommendRequest(user_id=user)).history
    assert history_after == (*history_before, before[0])  # the user tower reads the click
    history = requests.get(f"{server['url']}/users/{user}/history", headers=AUTH, timeout=30)
    assert history.json()["history"][-1] == before[0]
    assert history.json()["recent_feedback"][0]["query"] == "more like it"
    logged = pq.read_table(Path(server["settings"]["feedback_dir"]) / r.json()["logged_to"])
    assert logged.column("item_id").to_pylist() == [before[0]]
    assert logged.schema.field("timestamp").type == pa.int64()


def test_a_new_user_exists_after_their_first_feedback(server):
    assert post(server, {"user_id": "brand-new"}).status_code == 404
    item = server["bundle"].catalogue.ids[5]
    batch = {"events": [{"user_id": "brand-new", "item_id": item, "event": "purchase"}]}
    assert post(server, batch, "/feedback", headers=AUTH).status_code == 200
    r = post(server, {"user_id": "brand-new", "k": 3})
    assert r.status_code == 200 and item not in ids_of(r)


def replicas(app: str, deployment: str) -> list[str]:
    """The actor names of a deployment's live replicas, from this test's own Ray cluster
    (Serve names replica actors ``SERVE_REPLICA::<app>#<deployment>#<id>``)."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(prefix)
    )


def kill_replica(app: str, deployment: str) -> str:
    """Kill the deployment's (only) replica as a crash would (no shutdown hook, no flush)."""
    import ray

    (name,) = replicas(app, deployment)
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


def test_feedback_survives_a_killed_server(server):
    """The ingress replica is killed under load, right after a feedback 200; Serve starts
    another, which has the event (history and Parquet log), the logged answers and their
    attributed clicks, and attributes a click on an answer of the dead replica. Requests
    lost with the dead replica are answered 503 (never 500), the others 200."""
    item = server["bundle"].catalogue.ids[7]
    event = {"user_id": "durable-user", "item_id": item, "event": "like"}
    request = {"history": list(server["bundle"].catalogue.ids[30:33]), "k": 5}
    results, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                r = post(server, request)
                results.append((r.status_code, r.json()))
            except Exception as exc:
                results.append((599, repr(exc)))

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(hammer)
        time.sleep(1)
        r = post(server, event, "/feedback", headers=AUTH)
        assert r.status_code == 200, r.text
        shown = post(server, {**request, "session_id": "durable-session"}).json()
        click = {"user_id": "durable-clicker", "item_id": shown["items"][0]["item_id"]}
        click["request_id"] = shown["request_id"]
        clicked = post(server, click, "/feedback", headers=AUTH)
        assert clicked.status_code == 200 and clicked.json()["attributed"] == 1
        before = kill_replica("llmrec", "Ingress")
        deadline = time.time() + 180
        while time.time() < deadline:
            with contextlib.suppress(requests.RequestException):
                alive = replicas("llmrec", "Ingress")
                up = alive not in ([], [before])
                if up and requests.get(f"{server['url']}/healthz", timeout=5).status_code == 200:
                    break
            time.sleep(1)
        time.sleep(1)
        stop.set()
    assert replicas("llmrec", "Ingress") not in ([], [before])  # a new replica
    statuses = [s for s, _ in results]
    print(f"ingress killed under load: {len(results)} requests, {statuses.count(503)} 503")
    assert set(statuses) <= {200, 503}, [r for r in results if r[0] not in (200, 503)][:3]
    for status, body in results:
        if status == 503:
            assert ErrorBody.model_validate(body).detail[0].type == "service_unavailable"
    assert statuses[-1] == 200
    history = requests.get(
        f"{server['url']}/users/durable-user/history", headers=AUTH, timeout=30
    ).json()
    assert history["history"] == [item]
    rec = post(server, {"user_id": "durable-user", "k": 5})
    assert rec.status_code == 200 and item not in ids_of(rec)
    logged = pq.read_table(Path(server["settings"]["feedback_dir"]) / r.json()["logged_to"])
    assert logged.column("user_id").to_pylist() == ["durable-user"]
    # the answer and its attributed click outlived the replica; the new one attributes too
    late = {**click, "item_id": shown["items"][1]["item_id"]}
    again = post(server, late, "/feedback", headers=AUTH)
    assert again.status_code == 200 and again.json()["attributed"] == 1, again.text
    ImpressionLog(server["root"] / "impressions.sqlite", server["root"] / "exported").export()
    answers, events = read_log(server["root"] / "exported")
    assert shown["request_id"] in answers["request_id"].to_pylist()
    mine = [e for e in events.to_pylist() if e["request_id"] == shown["request_id"]]
    assert sorted(e["position"] for e in mine) == [1, 2]


@pytest.mark.parametrize("deployment", ["QueryEncoderDeployment", "CandidateRankerDeployment"])
def test_a_dead_encoder_or_ranker_fails_no_request(server, deployment):
    """Under load from 6 clients the replica is killed; the ingress retries the group's
    (idempotent) encode-and-rank call until Serve's replacement answers: every request gets
    its 200 and the same items as before."""
    request = {"history": list(server["bundle"].catalogue.ids[20:23]), "k": 5}
    expected = ids_of(post(server, request))
    results, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                r = post(server, request)
                results.append((r.status_code, ids_of(r) if r.status_code == 200 else r.text))
            except Exception as exc:
                results.append((599, repr(exc)))

    with ThreadPoolExecutor(6) as pool:
        for _ in range(6):
            pool.submit(hammer)
        time.sleep(2)
        before = kill_replica("llmrec", deployment)
        deadline = time.time() + 180
        while time.time() < deadline and replicas("llmrec", deployment) in ([], [before]):
            time.sleep(0.5)
        served = len(results)
        while time.time() < deadline and len(results) < served + 20:
            time.sleep(0.2)  # the new replica answers
        stop.set()
    failed = [r for r in results if r[0] != 200]
    print(f"{deployment} killed under load: {len(results)} requests, {len(failed)} failed")
    assert not failed, failed[:3]
    assert all(items == expected for _, items in results)
    assert len(results) >= served + 20


def test_health_readiness_and_openapi(server):
    assert requests.get(f"{server['url']}/healthz", timeout=30).json() == {
        "status": "ok",
        "model_version": "1",
    }
    ready = requests.get(f"{server['url']}/readyz", timeout=30).json()
    assert ready["ready"] is True and ready["model_version"] == "1"
    assert ready["index"] == f"exact ({len(server['bundle'].catalogue)} items)"
    spec = requests.get(f"{server['url']}/openapi.json", timeout=30).json()
    assert {"/recommend", "/feedback", "/readyz", "/admin/reload", "/admin/items"} <= set(
        spec["paths"]
    )
    assert requests.get(f"{server['url']}/docs", timeout=30).status_code == 200


def test_the_api_conforms_to_its_own_openapi_schema(server, tmp_path):
    """schemathesis (every check: status codes and error bodies as documented, schema-valid
    requests accepted, schema-invalid ones refused, no 5xx) with a bounded example count,
    stateful phase included. A 413 (a body over the limit) counts as refusing schema-invalid
    data. The stateful phase follows the links the API declares (POST /admin/items -> retire
    the item, -> recommend with it in an explained history: the sequence that once answered
    500) rather than links inferred from any id list feeding any other (it retired ids never
    created). ST302 ("created resource not found") is off: it counts a link's body as
    followed even when the fuzzer explores a random body instead, and calls the 404 for ids
    never created a failure."""
    cli = Path(sys.executable).with_name("schemathesis")
    config = tmp_path / "schemathesis.toml"
    refusals = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
    config.write_text(
        f"[checks.negative_data_rejection]\nexpected-statuses = {refusals!r}\n"
        "[checks.ensure_resource_availability]\nenabled = false\n"
        '[phases.stateful.inference]\nalgorithms = ["location-headers"]\n'
    )
    out = subprocess.run(
        [
            str(cli),
            "--config-file",
            str(config),
            "run",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            f"{server['url']}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "13",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, report
    assert "Tested: 13" in out.stdout, report  # 10 routes + GET/PUT/DELETE /admin/experiment
    assert "API Links:    2 covered / 2 selected / 2 total" in out.stdout, report


def test_http_proxy_listens_on_localhost_only(server):
    addresses = {
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == server["port"]
    }
    assert addresses == {"127.0.0.1"}


def _second_version(server, tmp: Path) -> Path:
    """A genuinely different model: the champion's item vectors rescaled item by item (the
    user tower reads its history through them, so users move too), and hybrid weights that
    give the model's term its say (on the demo data validation may pick the CF model alone)."""
    bundle = server["bundle"]
    new = tmp / "v2"
    shutil.copytree(bundle.path, new)
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.2, 3.0, size=(len(bundle.catalogue), 1))
    emb = (bundle.item_embeddings * scale).astype(np.float32)
    weights = new / "hybrid" / "weights.json"  # the model's own term counts in this version
    meta = json.loads(weights.read_text())
    meta["weights"] = meta["request_weights"] = {"llm": 1.0, "cf": 0.25, "popularity": 0.0}
    weights.write_text(json.dumps(meta))
    items = pq.read_table(new / "items.parquet")
    column = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    items = items.set_column(items.schema.get_field_index("embedding"), "embedding", column)
    pq.write_table(items, new / "items.parquet")
    return new


def _expected(bundle_dir: Path, request: dict) -> list[str]:
    bundle = ModelBundle(bundle_dir)
    query = QueryBuilder(bundle).build(RecommendRequest(**request))
    vec = QueryEncoder(bundle).encode([query])[0]
    return [i.item_id for i in CandidateRanker(bundle).rank(vec, query)]


def test_champion_swap_under_load_has_no_failures_and_no_mixed_versions(server, tmp_path):
    from ray import serve

    from serve_deployments import build_app

    cfg = RegistryConfig(tracking_uri=server["trained"]["tracking_uri"], model_name="swap-test")
    v2_dir = _second_version(server, tmp_path)
    common = dict(params={}, history=[], metrics={}, model_card="card", tags={})
    v1 = runs.log_and_register(cfg, run_name="v1", bundle_dir=server["bundle"].path, **common)
    settings = {**server["settings"], "model_uri": "models:/swap-test@champion"}
    settings["catalogue_db"] = str(tmp_path / "catalogue.sqlite")  # no live items (schemathesis')
    settings["watch_interval_s"] = 0.5
    serve.run(build_app(settings), name="swap", route_prefix="/swap")
    v2 = runs.log_and_register(cfg, run_name="v2", bundle_dir=v2_dir, **common)
    assert aliases.current_champion("swap-test") == v1.version  # v2 is only a candidate

    request = {"history": list(server["bundle"].catalogue.ids[10:14]), "k": 10}
    expected = {
        v1.version: _expected(server["bundle"].path, request),
        v2.version: _expected(v2_dir, request),
    }
    assert expected[v1.version] != expected[v2.version]

    results, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            sent = time.monotonic()
            try:
                r = requests.post(f"{server['url']}/swap/recommend", json=request, timeout=60)
                row = (r.status_code, r.json().get("model_version"), ids_of(r))
            except Exception as exc:  # a failed request is a result too
                row = (599, None, [repr(exc)])
            results.append((*row, sent, time.monotonic()))

    with ThreadPoolExecutor(8) as pool:
        for _ in range(8):
            pool.submit(hammer)
        time.sleep(3)
        aliases.set_champion("swap-test", v2.version)
        deadline = time.time() + 120
        while time.time() < deadline and not any(r[1] == v2.version for r in results):
            time.sleep(0.5)
        time.sleep(3)
        stop.set()
    serve.delete("swap")

    statuses = [r[0] for r in results]
    versions = [r[1] for r in results]
    print(
        f"swap under load: {len(results)} requests from 8 clients, "
        f"{versions.count(v1.version)} answered by v{v1.version}, "
        f"{versions.count(v2.version)} by v{v2.version}, "
        f"{len(results) - statuses.count(200)} failed"
    )
    assert statuses.count(200) == len(results), [r for r in results if r[0] != 200][:3]
    assert v1.version in versions and v2.version in versions
    # no mixed versions: every answer is exactly what its named version computes alone
    for _, version, ids, _, _ in results:
        assert ids == expected[version]
    # once switched, never back: judged by when requests were sent and answers received
    # (8 clients append in the order their answers came back, not the order they were sent)
    switched = min(r[4] for r in results if r[1] == v2.version)  # the first v2 answer received
    assert all(r[1] == v2.version for r in results if r[3] > switched)
