"""The FastAPI application of the ingress: error shape, edge checks, the OpenAPI document,
and the bearer-token credentials its routes declare (``ingress.py`` and ``review.py`` add
the routes)."""

from typing import Annotated

from fastapi import FastAPI, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from llmrec.api.errors import install_error_handlers
from llmrec.serving.http.edge import EdgeMiddleware, openapi_document

api = FastAPI(
    title="llmrec",
    description="Recommendations scored by a fine-tuned language model, with champion/"
    "challenger experiments. `/feedback`, `/users`, `/users/{user_id}/history`, `/admin/*` "
    "and `/recommend` with a `model_uri` need `Authorization: Bearer <token>` when the "
    "server runs with `LLMREC_API_TOKEN` set. Every error answers "
    '`{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.',
    version="0.3.0",
)
install_error_handlers(api)
api.add_middleware(EdgeMiddleware)
api.openapi = openapi_document(api)  # type: ignore[method-assign]
Credentials = Annotated[
    HTTPAuthorizationCredentials | None,
    Security(HTTPBearer(auto_error=False, description="The server's LLMREC_API_TOKEN.")),
]

ADDED_ITEM_LINKS = {
    "RetireTheItem": {
        "operationRef": "#/paths/~1admin~1items~1retire/post",
        "requestBody": {"item_ids": ["$request.body#/items/0/item_id"]},
        "description": "The item just added (or updated) can be retired.",
        # exactly this body: a fuzzer's own ids added to the list were never created
        "x-schemathesis": {"merge_body": False},
    },
    "RecommendAfterIt": {
        "operationRef": "#/paths/~1recommend/post",
        "requestBody": {"history": ["$request.body#/items/0/item_id"], "explain": True},
        "description": "The item just added can be a history item, explained.",
    },
}
"""OpenAPI links of ``POST /admin/items``: what its answer makes possible (API fuzzers follow
them in their stateful phase instead of guessing that any id list feeds any other)."""
