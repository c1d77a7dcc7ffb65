"""What the serving benchmarks (``serve_latency.py``, ``soak.py``, ``scale.py --http``,
``graph_overhead.py``) do alike: find a free port (and the address an app answers on),
summarise latencies, fetch the model's bundle from the registry it
lives in, register copies of it as new versions in the benchmark's own temporary MLflow store,
and run the graph with ``serve run`` on the shipped config (a Ray of its own).

Each benchmark serves copies of one registered model from a store of its own, so that its
aliases and versions never touch the store the model came from.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

if TYPE_CHECKING:
    from llmrec.config import RegistryConfig
    from llmrec.registry.store import RegisteredVersion

REPO = Path(__file__).resolve().parents[1]
ROLES = {
    "Ingress": "ingress",
    "QueryEncoderDeployment": "encoder",
    "CandidateRankerDeployment": "ranker",
    "ProxyActor": "proxy",
    "ServeController": "controller",
}
"""Serve actor class name -> role, as the benchmarks' tables name them."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentiles(times_ms: Sequence[float]) -> tuple[float, float, float]:
    """p50, p95 and p99 of ``times_ms``."""
    t = np.sort(np.asarray(times_ms))
    return (float(np.percentile(t, 50)), float(np.percentile(t, 95)), float(np.percentile(t, 99)))


def source_bundle(model: str, tracking_uri: str, dst: Path | None = None) -> Path:
    """The bundle folder of ``model`` (a ``models:/`` URI) in the store at ``tracking_uri``
    (a relative sqlite path is taken from here), downloaded to ``dst`` (None: a temporary
    folder). Leaves MLflow pointed at that store.

    Raises:
        ModelNotFoundError: no such model or version.
    """
    import mlflow
    from llmrec.registry import store as registry
    from llmrec.serving.settings import absolute_tracking_uri

    mlflow.set_tracking_uri(absolute_tracking_uri(tracking_uri))
    _, source = registry.download_bundle(model, dst)
    return source


def register_copy(cfg: RegistryConfig, run_name: str, bundle_dir: Path) -> RegisteredVersion:
    """``bundle_dir`` logged as a run named ``run_name`` and registered as a new version of
    ``cfg.model_name`` in ``cfg``'s store (no params, metrics or tags: a benchmark's copy)."""
    from llmrec.registry import runs

    return runs.log_and_register(
        cfg,
        run_name=run_name,
        params={},
        history=[],
        metrics={},
        bundle_dir=bundle_dir,
        model_card=run_name,
        tags={},
    )


def serve_run(
    tmp: Path, port: int, args: dict[str, Any], env_vars: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``serve run`` on ``serve_deployments/serve_config.yaml`` with this ``port``, these
    :class:`~llmrec.serving.ServeSettings` fields (``args``) and replica environment
    (``env_vars``), the proxy callback of a real deployment and a Ray of its own; its log is
    ``tmp/serve.log``. Stop it with :func:`stop_server`."""
    from llmrec.serving.http.proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV

    config = yaml.safe_load((REPO / "serve_deployments" / "serve_config.yaml").read_text())
    config["http_options"]["port"] = port
    app = config["applications"][0]
    app["args"].update(args)
    app["runtime_env"]["env_vars"].update(env_vars or {})
    path = tmp / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, PROXY_CALLBACK_ENV: PROXY_CALLBACK}
    env.pop("RAY_ADDRESS", None)  # a Ray of its own
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115 (lives as long as the server)
    serve = Path(sys.executable).with_name("serve")
    return subprocess.Popen(
        [str(serve), "run", str(path)], cwd=REPO, env=env, stdout=log, stderr=log
    )


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Stop ``serve run`` (it shuts its Ray down on SIGTERM); kill it after 2 minutes."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.kill()


def serve_processes(root_pid: int) -> dict[str, Any]:
    """The Serve processes of this run's Ray (descendants of ``serve run``), by role."""
    import psutil

    out: dict[str, Any] = {}  # role -> psutil.Process
    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return out
    for proc in children:
        try:
            title = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for key, role in ROLES.items():
            if title.startswith("ray::") and key in title.split()[0]:
                out[role] = proc
    return out


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once ``/readyz`` answers 200; exit if ``serve run`` dies or ``timeout`` s pass."""
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"serve run exited with {server.returncode}; see its log")
        try:
            if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    raise SystemExit(f"the server was not ready after {timeout:.0f} s")


def url_of(port: int) -> str:
    """The graph's address: the proxy's port, or (direct ingress) the ingress replica's."""
    import requests

    for p in [*range(30000, 30010), port]:  # a replica's own port first (direct ingress)
        try:
            if requests.get(f"http://127.0.0.1:{p}/healthz", timeout=2).status_code == 200:
                return f"http://127.0.0.1:{p}"
        except requests.RequestException:
            continue
    raise RuntimeError("the graph answers on no port")


def gone(url: str, seconds: float = 60.0) -> None:
    """Wait until a deleted app's address stops answering (direct ingress: its port)."""
    import requests

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            r = requests.get(url.removesuffix("/recommend") + "/healthz", timeout=1)
        except requests.RequestException:
            return
        if r.status_code != 200:  # the proxy stays, answering 404 for the app that went
            return
        time.sleep(0.5)
