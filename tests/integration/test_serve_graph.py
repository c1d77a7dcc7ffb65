"""The Ray Serve graph over real HTTP, serving the champion registered by the finetune job:
requests and every class of bad input, filters, diversity, feedback (durable, reflected in the
next answer), the token check, and a model swap under concurrent load."""

import contextlib
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from llmrec import registry
from llmrec.bundle import ModelBundle
from llmrec.config import RegistryConfig
from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, RecommendRequest
from llmrec.serving.history import HistoryStore

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    from ray import serve

    from serve_deployments import build_app

    root = tmp_path_factory.mktemp("serve")
    port = _free_port()
    serve.start(http_options={"port": port})  # the host is Serve's default: 127.0.0.1
    settings = {
        "tracking_uri": trained["tracking_uri"],
        "history_db": str(root / "history.sqlite"),
        "feedback_dir": str(root / "feedback"),
        "watch_interval_s": 0,
        "max_body_bytes": 32768,
    }
    os.environ["LLMREC_API_TOKEN"] = TOKEN
    try:
        serve.run(build_app(settings), name="llmrec", route_prefix="/")
    finally:
        del os.environ["LLMREC_API_TOKEN"]
    mlflow.set_tracking_uri(trained["tracking_uri"])
    _, bundle = registry.download_bundle("models:/llmrec-scorer@champion", root / "bundle")
    yield {
        "url": f"http://127.0.0.1:{port}",
        "port": port,
        "bundle": ModelBundle(bundle),
        "settings": settings,
        "trained": trained,
        "root": root,
    }
    serve.shutdown()


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
    query = QueryBuilder(bundle).build(RecommendRequest(**req))
    vec = QueryEncoder(bundle).encode([query.text])[0]
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
    vectors = QueryEncoder(bundle).encode([q.text for q in queries])
    together = ranker.rank_many(vectors, queries)
    alone = [ranker.rank(v, q) for v, q in zip(vectors, queries, strict=True)]
    assert [[i.item_id for i in a] for a in together] == [[i.item_id for i in a] for a in alone]
    assert [len(a) for a in together] == [10, 6, 8, 3]


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
    from llmrec.ranking.rerank import category_distribution
    from llmrec.training.metrics import miscalibration

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
        ({"history": ["nope", "i0001"]}, 422, "unknown item ids in history: 'nope'"),
        ({"query": "x", "exclude": ["gone"]}, 422, "unknown item ids in exclude: 'gone'"),
        ({"query": "x", "categories": ["Polka"]}, 422, "unknown categories: 'Polka' (known: "),
        ({"query": "x", "diversity": 2}, 422, "less than or equal to 1"),
        ({"query": "x", "calibration": -0.5}, 422, "greater than or equal to 0"),
        ({"query": "x", "tail_share": 1.5}, 422, "less than or equal to 1"),
        ({"query": "x", "max_per": {"provider": 0}}, 422, "greater than or equal to 1"),
        (
            {"query": "x", "max_per": {"colour": 2}},
            422,
            "unknown attributes in max_per: 'colour' (known: categories, provider)",
        ),
        ({"query": "x", "colour": "red"}, 422, "Extra inputs are not permitted"),
        ({"user_id": "u0001", "history": ["i0001"]}, 422, "either user_id or history"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_why(server, body, status, message):
    r = post(server, body)
    assert r.status_code == status
    assert message in r.text


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
    ("body", "message"),
    [
        ({"user_id": "u0001", "item_id": "zzz"}, "unknown item ids: 'zzz'"),
        ({"user_id": "u0001", "item_id": "i0001", "event": "teleport"}, "Input should be"),
        ({"user_id": "u0001", "item_id": "i0001", "value": "NaN"}, "finite number"),
        ({"events": []}, "at least 1 item"),
        ({"user_id": "", "item_id": "i0001"}, "at least 1 character"),
    ],
)
def test_bad_feedback_gets_a_422(server, body, message):
    r = post(server, body, "/feedback", headers=AUTH)
    assert r.status_code == 422 and message in r.text


def test_feedback_changes_the_next_recommendation(server):
    bundle = server["bundle"]
    user = list(bundle.histories)[3]
    builder = QueryBuilder(bundle, HistoryStore(server["settings"]["history_db"]))
    text_before = builder.build(RecommendRequest(user_id=user)).text
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
    text_after = builder.build(RecommendRequest(user_id=user)).text
    title = bundle.catalogue.title(before[0])
    assert text_after != text_before and text_after.startswith(f"Recently: {title} (")
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


def _ingress_processes(app: str) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if (p.info["cmdline"] or [""])[0].startswith(f"ray::ServeReplica:{app}:Ingress")
    ]


def test_feedback_survives_a_killed_server(server):
    """The ingress replica is SIGKILLed right after its 200; Serve starts it again and the
    restarted process has the event (history and Parquet log)."""
    item = server["bundle"].catalogue.ids[7]
    event = {"user_id": "durable-user", "item_id": item, "event": "like"}
    (before,) = _ingress_processes("llmrec")
    r = post(server, event, "/feedback", headers=AUTH)
    assert r.status_code == 200, r.text
    before.kill()  # SIGKILL: no shutdown hook, no flush
    before.wait(timeout=30)
    deadline = time.time() + 180
    while time.time() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{server['url']}/healthz", timeout=5).status_code == 200:
                break
        time.sleep(1)
    (after,) = _ingress_processes("llmrec")
    assert after.pid != before.pid  # a new server process
    history = requests.get(
        f"{server['url']}/users/durable-user/history", headers=AUTH, timeout=30
    ).json()
    assert history["history"] == [item]
    rec = post(server, {"user_id": "durable-user", "k": 5})
    assert rec.status_code == 200 and item not in ids_of(rec)
    logged = pq.read_table(Path(server["settings"]["feedback_dir"]) / r.json()["logged_to"])
    assert logged.column("user_id").to_pylist() == ["durable-user"]


def test_health_readiness_and_openapi(server):
    assert requests.get(f"{server['url']}/healthz", timeout=30).json() == {
        "status": "ok",
        "model_version": "1",
    }
    ready = requests.get(f"{server['url']}/readyz", timeout=30).json()
    assert ready["ready"] is True and ready["model_version"] == "1"
    assert ready["index"] == f"exact ({len(server['bundle'].catalogue)} items)"
    spec = requests.get(f"{server['url']}/openapi.json", timeout=30).json()
    assert {"/recommend", "/feedback", "/readyz", "/admin/reload"} <= set(spec["paths"])
    assert requests.get(f"{server['url']}/docs", timeout=30).status_code == 200


def test_http_proxy_listens_on_localhost_only(server):
    addresses = {
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == server["port"]
    }
    assert addresses == {"127.0.0.1"}


def _second_version(server, tmp: Path) -> Path:
    """A genuinely different model: the champion's adapter with its LoRA B matrices scaled,
    the catalogue re-embedded with it."""
    bundle = server["bundle"]
    new = tmp / "v2"
    shutil.copytree(bundle.path, new)
    scorer = bundle.load_scorer()
    with __import__("torch").no_grad():
        for name, p in scorer.named_parameters():
            if "lora_B" in name:
                p.mul_(3.0).add_(0.05)
    scorer.save(new / "scorer")
    emb = scorer.encode(bundle.catalogue.texts(), kind="item").numpy().astype(np.float32)
    items = pq.read_table(new / "items.parquet")
    column = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    items = items.set_column(items.schema.get_field_index("embedding"), "embedding", column)
    pq.write_table(items, new / "items.parquet")
    return new


def _expected(bundle_dir: Path, request: dict) -> list[str]:
    bundle = ModelBundle(bundle_dir)
    query = QueryBuilder(bundle).build(RecommendRequest(**request))
    vec = QueryEncoder(bundle).encode([query.text])[0]
    return [i.item_id for i in CandidateRanker(bundle).rank(vec, query)]


def test_champion_swap_under_load_has_no_failures_and_no_mixed_versions(server, tmp_path):
    from ray import serve

    from serve_deployments import build_app

    cfg = RegistryConfig(tracking_uri=server["trained"]["tracking_uri"], model_name="swap-test")
    v2_dir = _second_version(server, tmp_path)
    common = dict(params={}, history=[], metrics={}, model_card="card", tags={})
    v1 = registry.log_and_register(cfg, run_name="v1", bundle_dir=server["bundle"].path, **common)
    settings = {**server["settings"], "model_uri": "models:/swap-test@champion"}
    settings["watch_interval_s"] = 0.5
    serve.run(build_app(settings), name="swap", route_prefix="/swap")
    v2 = registry.log_and_register(cfg, run_name="v2", bundle_dir=v2_dir, **common)
    assert registry.current_champion("swap-test") == v1.version  # v2 is only a candidate

    request = {"history": list(server["bundle"].catalogue.ids[10:14]), "k": 10}
    expected = {
        v1.version: _expected(server["bundle"].path, request),
        v2.version: _expected(v2_dir, request),
    }
    assert expected[v1.version] != expected[v2.version]

    results, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                r = requests.post(f"{server['url']}/swap/recommend", json=request, timeout=60)
                body = r.json()
                results.append((r.status_code, body.get("model_version"), ids_of(r)))
            except Exception as exc:  # a failed request is a result too
                results.append((599, None, [repr(exc)]))

    with ThreadPoolExecutor(8) as pool:
        for _ in range(8):
            pool.submit(hammer)
        time.sleep(3)
        registry.set_champion("swap-test", v2.version)
        deadline = time.time() + 120
        while time.time() < deadline and not any(v == v2.version for _, v, _ in results):
            time.sleep(0.5)
        time.sleep(3)
        stop.set()
    serve.delete("swap")

    statuses = [s for s, _, _ in results]
    versions = [v for _, v, _ in results]
    print(
        f"swap under load: {len(results)} requests from 8 clients, "
        f"{versions.count(v1.version)} answered by v{v1.version}, "
        f"{versions.count(v2.version)} by v{v2.version}, "
        f"{len(results) - statuses.count(200)} failed"
    )
    assert statuses.count(200) == len(results), [r for r in results if r[0] != 200][:3]
    assert v1.version in versions and v2.version in versions
    # no mixed versions: every answer is exactly what its named version computes alone
    for _, version, ids in results:
        assert ids == expected[version]
    # once switched, never back
    first_v2 = versions.index(v2.version)
    assert set(versions[first_v2:]) == {v2.version}
