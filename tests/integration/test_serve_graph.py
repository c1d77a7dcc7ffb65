"""The Ray Serve graph over real HTTP, serving the champion registered by the finetune job."""

import socket

import mlflow
import pytest
import requests
from llmrec import registry

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained):
    from ray import serve

    from serve_deployments import build_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"tracking_uri": trained["tracking_uri"]}), name="llmrec", route_prefix="/")
    mlflow.set_tracking_uri(trained["tracking_uri"])
    _, bundle = registry.download_bundle("models:/llmrec-scorer@champion")
    from llmrec.bundle import ModelBundle

    yield {"url": f"http://127.0.0.1:{port}", "bundle": ModelBundle(bundle)}
    serve.shutdown()


def post(server, body, **kw):
    return requests.post(f"{server['url']}/recommend", json=body, timeout=60, **kw)


def test_known_user_gets_k_unseen_items_from_the_champion(server):
    user, seen = next(iter(server["bundle"].histories.items()))
    r = post(server, {"user_id": user, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "1"
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 7 == len(set(ids))
    assert not set(ids) & set(seen)
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    catalogue = server["bundle"].catalogue
    assert [i["title"] for i in body["items"]] == [catalogue.title(i) for i in ids]


def test_history_and_query_request(server):
    catalogue = server["bundle"].catalogue
    history = list(catalogue.ids[:3])
    r = post(server, {"history": history, "query": "dragons and wizards", "k": 5})
    assert r.status_code == 200, r.text
    ids = [i["item_id"] for i in r.json()["items"]]
    assert len(ids) == 5 and not set(ids) & set(history)
    # the query matters: the answer differs from the same history without it
    plain = post(server, {"history": history, "k": 5}).json()["items"]
    assert [i["item_id"] for i in plain] != ids


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"user_id": "no-such-user"}, 404, "unknown user_id 'no-such-user'"),
        ({"k": 5}, 422, "give a user_id, a non-empty history or a query"),
        ({"query": "x", "k": 0}, 422, "greater than or equal to 1"),
        ({"query": "x", "k": 101}, 422, "less than or equal to 100"),
        ({"history": ["nope", "i0001"]}, 422, "unknown item ids in history: 'nope'"),
        ({"query": "x", "colour": "red"}, 422, "Extra inputs are not permitted"),
        ({"user_id": "u0001", "history": ["i0001"]}, 422, "either user_id or history"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_why(server, body, status, message):
    r = post(server, body)
    assert r.status_code == status
    assert message in r.text


def test_malformed_json_is_a_422(server):
    r = requests.post(
        f"{server['url']}/recommend",
        data="{not json",
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 422
    assert "JSON decode error" in r.text


def test_health_and_openapi(server):
    assert requests.get(f"{server['url']}/healthz", timeout=30).json() == {
        "status": "ok",
        "model_version": "1",
    }
    spec = requests.get(f"{server['url']}/openapi.json", timeout=30).json()
    assert "/recommend" in spec["paths"]
    assert requests.get(f"{server['url']}/docs", timeout=30).status_code == 200
