"""The served graph shared by the Serve modules (test_serve_graph.py, then
test_serve_graph_experiments.py, the last two of this package): one Serve instance and one
app for both, started once (about 35 s on 2 cores) and shut down after the last of them."""

import os
import socket

import mlflow
import pytest
from llmrec.registry import store as registry
from llmrec.registry.bundle import ModelBundle

SERVE_TOKEN = "s3cret-token"
"""The bearer token of the shared server."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="package")
def server(trained, tmp_path_factory):
    from ray import serve

    from serve_deployments import build_app

    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    serve.start(http_options={"port": port})  # the host is Serve's default: 127.0.0.1
    settings = {
        "tracking_uri": trained["tracking_uri"],
        "history_db": str(root / "history.sqlite"),
        "feedback_dir": str(root / "feedback"),
        "watch_interval_s": 0,
        "max_body_bytes": 32768,
    }
    os.environ["LLMREC_API_TOKEN"] = SERVE_TOKEN
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
