"""The HTTP edge without Ray: one error shape, body limit, media type, request counting by
route template (non-ASCII paths), the bearer token, the OpenAPI document; version cache and
retries across replica deaths."""

import asyncio
import time
from typing import Annotated

import jsonschema
import numpy as np
import pytest
from fastapi import APIRouter, FastAPI, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from llmrec.api.errors import ApiError, ErrorBody, error_responses, install_error_handlers
from llmrec.api.schemas import FeedbackEvent
from llmrec.serving import RecommendRequest
from llmrec.serving import settings as serving_settings
from llmrec.serving.cache import UserVectorCache, fingerprint
from llmrec.serving.http.edge import UNMATCHED, BearerAuth, EdgeMiddleware, openapi_document, sha256
from llmrec.serving.http.proxy import ReplicaLostMiddleware, middlewares
from llmrec.serving.http.resilience import RetryPolicy, Unavailable, caused_by, retry
from llmrec.serving.versions import VersionCache
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.testclient import TestClient


class Counter:
    def __init__(self) -> None:
        self.tags: list[dict[str, str]] = []

    def inc(self, tags: dict[str, str]) -> None:
        assert all(v.isascii() for v in tags.values()), tags  # what Ray's metrics demand
        self.tags.append(tags)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    k: int


AUTH = BearerAuth(sha256("tok"))


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(EdgeMiddleware)
    app.openapi = openapi_document(app)  # type: ignore[method-assign]
    bearer = HTTPBearer(auto_error=False)
    Cred = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]

    @app.get("/users/{user_id}/history", responses=error_responses(401, 404))
    def history(user_id: str, cred: Cred):
        AUTH.check(f"{cred.scheme} {cred.credentials}" if cred else None)
        raise ApiError(404, f"unknown user_id {user_id!r}", ("path", "user_id"))

    @app.post("/echo", responses=error_responses(413, 415, 422))
    def echo(body: Body) -> dict:
        return {"k": body.k}

    @app.post("/admin/echo", responses=error_responses(413, 415, 422))
    def admin_echo(body: Body) -> dict:
        return {"k": body.k}

    return app


@pytest.fixture
def client(monkeypatch):
    counter = Counter()
    monkeypatch.setitem(serving_settings.EDGE, "requests", counter)
    monkeypatch.setitem(serving_settings.EDGE, "max_body_bytes", 1024)
    monkeypatch.setitem(serving_settings.EDGE, "max_admin_body_bytes", 4096)
    monkeypatch.setitem(serving_settings.EDGE, "secured", True)
    c = TestClient(_app())
    c.counter = counter
    return c


def _one_error(r, status: int, type_: str) -> dict:
    assert r.status_code == status, r.text
    body = ErrorBody.model_validate(r.json())  # the documented shape, nothing else
    assert set(r.json()) == {"detail"} and len(body.detail) >= 1
    assert body.detail[0].type == type_
    return r.json()["detail"][0]


@pytest.mark.parametrize("user", ["%C3%88ve", "%E7%94%A8%E6%88%B7%E4%B8%80"])  # Ève, 用户一
def test_non_ascii_user_ids_are_counted_by_route_template(client, user):
    r = client.get(f"/users/{user}/history", headers={"Authorization": "Bearer tok"})
    item = _one_error(r, 404, "not_found")
    assert item["loc"] == ["path", "user_id"]
    assert "Ève" in item["msg"] or "用户一" in item["msg"]
    assert client.counter.tags == [{"route": "/users/{user_id}/history", "status": "404"}]


def test_every_error_has_the_one_shape(client):
    item = _one_error(client.post("/echo", json={"k": "5"}), 422, "int_type")
    assert item["loc"] == ["body", "k"] and "input" not in item
    item = _one_error(client.get("/nowhere/%E2%98%83"), 404, "not_found")
    r = client.get("/echo")
    _one_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    r = client.get("/users/x/history", headers={"Authorization": "Bearer nope"})
    item = _one_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer" and item["loc"] == ["header", "authorization"]
    _one_error(client.post("/echo", content=b"{bad", headers=_json()), 422, "json_invalid")
    _one_error(client.post("/echo", content=b"\xff\xfe{", headers=_json()), 422, "json_invalid")
    assert [t["route"] for t in client.counter.tags] == [
        "/echo",
        UNMATCHED,
        "/echo",
        "/users/{user_id}/history",
        "/echo",
        "/echo",
    ]


def _json() -> dict[str, str]:
    return {"content-type": "application/json"}


def test_body_limit_holds_with_and_without_content_length(client):
    big = b'{"k": 1' + b" " * 2000 + b"}"
    item = _one_error(client.post("/echo", content=big, headers=_json()), 413, "payload_too_large")
    assert item["msg"] == f"request body is {len(big)} bytes; the limit is 1024"
    chunked = client.post("/echo", content=iter([big[:1000], big[1000:]]), headers=_json())
    _one_error(chunked, 413, "payload_too_large")
    small = client.post("/echo", content=iter([b'{"k":', b" 3}"]), headers=_json())
    assert small.status_code == 200 and small.json() == {"k": 3}  # replayed intact
    assert client.counter.tags[0] == {"route": "/echo", "status": "413"}


def test_a_body_that_is_not_json_is_a_415(client):
    r = client.post("/echo", content=b"k=1", headers={"content-type": "text/plain"})
    item = _one_error(r, 415, "unsupported_media_type")
    assert "'text/plain'" in item["msg"]
    ok = client.post("/echo", content=b'{"k": 1}', headers={"content-type": "application/json"})
    assert ok.status_code == 200


def test_openapi_declares_the_token_only_when_one_is_set(client, monkeypatch):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/users/{user_id}/history"]["get"]
    assert op["security"] == [{"HTTPBearer": []}] and "401" in op["responses"]
    assert op["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    monkeypatch.setitem(serving_settings.EDGE, "secured", False)
    op = client.get("/openapi.json").json()["paths"]["/users/{user_id}/history"]["get"]
    assert "security" not in op and "401" not in op["responses"]


def test_bearer_auth():
    AUTH.check("Bearer tok")
    AUTH.check("bearer  tok ")
    for bad in (None, "", "Bearer", "Basic tok", "Bearer tok2"):
        with pytest.raises(ApiError) as err:
            AUTH.check(bad)
        assert err.value.status == 401
    BearerAuth(None).check(None)  # no token set: open


SCHEMA = RecommendRequest.model_json_schema()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"k": 5},
        {"history": []},
        {"query": " \t\n"},
        {"query": "\u3000"},
        {"user_id": None},
        {"user_id": "u", "history": ["a"]},
        {"user_id": "u", "history": []},
        {"query": "x", "history": []},
        {"query": "x", "k": "5"},
        {"query": "x", "k": True},
        {"query": "x", "k": 6.0},
        {"query": "x", "k": 6.5},
        {"history": ["a"], "query": None},
        {"user_id": "用户一", "query": "书"},
    ],
)
def test_the_schema_and_the_validator_agree(body):
    try:
        jsonschema.validate(body, SCHEMA)
        schema_ok = True
    except jsonschema.ValidationError:
        schema_ok = False
    try:
        RecommendRequest.model_validate(body)
        model_ok = True
    except ValidationError:
        model_ok = False
    assert schema_ok == model_ok, (body, schema_ok, model_ok)


def test_version_cache_loads_once_and_keeps_the_last_two():
    loads: list[str] = []

    def load(uri: str) -> str:
        loads.append(uri)
        time.sleep(0.05)
        return uri.upper()

    async def main() -> None:
        cache = VersionCache(load, size=2)
        got = await asyncio.gather(*[cache.get("a") for _ in range(5)])
        assert got == ["A"] * 5 and loads == ["a"]
        await cache.get("b")
        await cache.get("a")  # a is the most recent now
        await cache.get("c")  # b goes
        assert list(cache.loaded) == ["a", "c"]

    asyncio.run(main())


class Died(Exception):
    pass


def test_retry_survives_replica_deaths_and_gives_up_at_the_deadline():
    calls = {"n": 0}

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise RuntimeError("upstream died") from Died()
        return "ok"

    policy = RetryPolicy(deadline_s=2.0, first_delay_s=0.01, max_delay_s=0.05)

    def death(e: BaseException) -> bool:
        return caused_by(e, (Died,))

    assert asyncio.run(retry(flaky, death, policy)) == "ok" and calls["n"] == 3

    async def dead() -> str:
        raise Died()

    start = time.monotonic()
    with pytest.raises(Unavailable) as err:
        asyncio.run(retry(dead, death, RetryPolicy(0.3, 0.01, 0.05)))
    assert time.monotonic() - start < 1.0 and isinstance(err.value.__cause__, Died)

    async def bug() -> str:
        raise ValueError("not a death")

    with pytest.raises(ValueError):
        asyncio.run(retry(bug, death, policy))
    assert RetryPolicy(deadline_s=0).problems() == ["retry.deadline_s must be > 0, got 0"]


def _run_asgi(app) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(ReplicaLostMiddleware(app)({"type": "http"}, receive, send))
    return sent


def test_the_proxy_answers_503_for_a_request_whose_replica_died():
    async def died(scope, receive, send):  # what Ray's proxy does on RayActorError
        return None

    async def raised(scope, receive, send):
        raise RuntimeError("actor died")

    async def answered(scope, receive, send):
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"own error"})

    for app in (died, raised):
        start, body = _run_asgi(app)
        assert start["status"] == 503 and (b"retry-after", b"1") in start["headers"]
        (item,) = ErrorBody.model_validate_json(body["body"]).detail
        assert item.type == "service_unavailable" and "retry" in item.msg
    start, body = _run_asgi(answered)  # the ingress's own answers pass untouched
    assert start["status"] == 500 and body["body"] == b"own error"
    assert [type(m.cls) for m in middlewares()] == [type(ReplicaLostMiddleware)]


def test_user_vector_cache_is_bounded_per_version_and_input():
    cache = UserVectorCache(size=3)
    v = np.ones(4, dtype=np.float32)
    a, b = fingerprint("text a", ("i1",)), fingerprint("text b", ("i1", "i2"))
    assert a != b and a == fingerprint("text a", ("i1",))
    cache.put("m/1", "u1", a, v)
    assert np.array_equal(cache.get("m/1", "u1", a), v)
    assert cache.get("m/1", "u1", b) is None  # the history changed (another replica's feedback)
    assert cache.get("m/2", "u1", a) is None  # another version
    cache.put("m/2", "u1", a, 2 * v)
    cache.put("m/1", "u2", a, v)
    cache.get("m/1", "u1", a)  # u1 on m/1 is now the most recent
    cache.put("m/1", "u3", a, v)  # over the bound: the least recent (m/2, u1) goes
    assert len(cache) == 3 and cache.get("m/2", "u1", a) is None
    cache.forget("u1")
    assert cache.get("m/1", "u1", a) is None and len(cache) == 2
    cache.put("m/2", "u4", a, v)
    cache.retain("m/2")
    assert len(cache) == 1 and cache.get("m/2", "u4", a) is not None
    off = UserVectorCache(size=0)
    off.put("m/1", "u1", a, v)
    assert off.get("m/1", "u1", a) is None


def _keys(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys(value)


def test_the_served_openapi_has_only_json_schema_constraints(monkeypatch):
    """pydantic writes a constraint it cannot place as a raw key ("ge"), which validators
    ignore: the schema would then allow what the server refuses."""
    from serve_deployments.ingress import api

    monkeypatch.setitem(serving_settings.EDGE, "secured", True)
    spec = api.openapi()
    assert not {"ge", "le", "gt", "lt"} & set(_keys(spec))
    schema = {**spec["components"]["schemas"]["FeedbackEvent"], "components": spec["components"]}
    event = {"user_id": "u", "item_id": "i"}
    for timestamp, ok in ((5, True), (5.0, True), (-1, False), ("5", False)):
        body = {**event, "timestamp": timestamp}
        try:
            jsonschema.validate(body, schema)
            schema_ok = True
        except jsonschema.ValidationError:
            schema_ok = False
        try:
            FeedbackEvent.model_validate(body)
            model_ok = True
        except ValidationError:
            model_ok = False
        assert schema_ok == model_ok == ok, (timestamp, schema_ok, model_ok)


def test_admin_routes_have_their_own_body_limit(client):
    body = '{"k": 5, "pad": "' + "x" * 2000 + '"}'
    headers = {"content-type": "application/json"}
    item = _one_error(client.post("/echo", content=body, headers=headers), 413, "payload_too_large")
    assert "limit is 1024" in item["msg"]
    assert client.post("/admin/echo", content=body, headers=headers).status_code != 413
    big = '{"k": 5, "pad": "' + "x" * 5000 + '"}'
    item = _one_error(
        client.post("/admin/echo", content=big, headers=headers), 413, "payload_too_large"
    )
    assert "limit is 4096" in item["msg"]


def test_a_405_lists_every_method_of_the_path():
    """One route per method at one path (GET/PUT/DELETE /admin/experiment): the 405's
    ``Allow`` names them all, in the one error shape."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/thing")
    async def get_thing() -> dict:
        return {}

    @app.put("/thing")
    async def put_thing() -> dict:
        return {}

    @app.delete("/thing")
    async def delete_thing() -> dict:
        return {}

    r = TestClient(app).options("/thing")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, PUT"
    assert ErrorBody.model_validate(r.json()).detail[0].type == "method_not_allowed"


def test_a_405_lists_the_methods_of_an_included_router():
    """Ray Serve's ``@serve.ingress`` adds a class's routes with ``include_router``: the
    ``Allow`` of a 405 names the methods of the routes inside it too."""
    router = APIRouter()

    @router.get("/admin/experiment")
    async def status() -> dict:
        return {}

    @router.put("/admin/experiment")
    async def start() -> dict:
        return {}

    @router.delete("/admin/experiment")
    async def stop() -> dict:
        return {}

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    client = TestClient(app)
    for method in ("OPTIONS", "PATCH"):
        r = client.request(method, "/admin/experiment")
        assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, PUT", method
    assert client.get("/admin/experiment").status_code == 200
