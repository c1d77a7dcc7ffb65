"""The scoring graph: ingress (FastAPI) -> query encoder (the LLM) -> candidate ranker.

``serve_deployments`` is the only Ray Serve code, one module per deployment
(``ingress.py`` with its FastAPI app ``api.py``, its answering path ``answering.py`` and the
review page's routes ``review.py``; ``encoder.py``, ``ranker.py``) and this one, which binds
them; the work itself lives in ``llmrec.serving``.

One model version per request: the ingress routes each request to a concrete version
(``models:/name/N``: the app's, or while an experiment runs the one its user's variant
serves) and passes it with every call, and the encoder and the ranker answer for the version
they are asked for (each keeps every version served, and room for each one's successor). A
request is therefore computed end to end with one version's query tower and that same
version's item embeddings. When an alias followed (``model_uri``, default
``<model>@champion``, or a variant's) moves — seen by a watcher every ``watch_interval_s``,
by ``POST /admin/reload``, or by a new ``user_config`` — the ingress loads the new version in
the encoder and the ranker first and only then switches; requests in flight finish on the
version they started with.
"""

import os
from typing import Any, cast

from llmrec.registry import aliases
from llmrec.registry import store as registry
from llmrec.serving import ServeSettings
from llmrec.serving.http.edge import sha256
from ray.serve import Deployment

from serve_deployments.encoder import ENCODER_ENV, QueryEncoderDeployment
from serve_deployments.ingress import TOKEN_ENV, Ingress
from serve_deployments.ranker import CandidateRankerDeployment

__all__ = ["ENCODER_ENV", "TOKEN_ENV", "build_app"]


def build_app(args: dict[str, Any]) -> Any:
    """Application builder; ``args`` are :class:`~llmrec.serving.ServeSettings` fields
    (``serve_config.yaml`` or ``serve run serve_deployments:build_app key=value``).

    ``$LLMREC_API_TOKEN``, where the app is built or in the ingress replica's environment,
    turns on bearer-token checks for ``/feedback``, ``/users/...`` and ``/admin/...``.
    """
    import mlflow

    settings = ServeSettings.from_args(args)
    mlflow.set_tracking_uri(settings.tracking_uri)
    follows = settings.model_uri or aliases.default_model_uri()
    pinned = registry.resolve(follows).uri  # the first version, the same in all three
    plain = settings.model_copy(update={"model_uri": follows}).model_dump()
    # @serve.deployment made each class a Deployment; mypy does not apply class decorators
    encoder = cast(Deployment, QueryEncoderDeployment).bind(plain, pinned)
    ranker = cast(Deployment, CandidateRankerDeployment).bind(plain, pinned)
    token = os.environ.get(TOKEN_ENV)  # only its digest travels to the replica
    digest = sha256(token) if token else None
    return cast(Deployment, Ingress).bind(encoder, ranker, plain, pinned, digest)
