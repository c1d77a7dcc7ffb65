"""Soak under faults: mixed traffic against `serve run` with a champion swap and replica kills.

    python benchmarks/soak.py                              # 10 minutes, concurrency 16
    python benchmarks/soak.py --minutes 2                  # a short check

The script registers the model (``--model`` in ``--tracking-uri``, default the champion of
./mlflow.db) twice in a temporary MLflow store, starts ``serve run`` on
``serve_deployments/serve_config.yaml`` (a free port, that store, the token and proxy
settings of a real deployment) and sends, from ``--concurrency`` client threads: known users,
histories with queries, queries alone, feedback (with the token), user histories, readiness
checks and bad requests (each must get its 4xx). At set shares of the run it moves the
``champion`` alias to the second version (the server follows it) and kills the encoder, the
ranker and the ingress replica (SIGKILL of the replica process of this run's own Ray,
found among the ``serve run`` process's descendants).

Printed per minute: requests, p50/p99 latency, 5xx, failed requests, each Serve process's
memory (RSS). At the end: failed requests overall and outside the kill windows (from a kill
until the first request served after it, plus ``--window`` seconds), acknowledged feedback
events missing afterwards, and memory growth of each process over the steady window (after
the swap and warm-up, before the first kill).
"""

from __future__ import annotations

import argparse
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import quiet
from _serving import (
    free_port,
    register_copy,
    serve_processes,
    serve_run,
    source_bundle,
    stop_server,
    wait_ready,
)
from _soak_report import Result, report

if TYPE_CHECKING:
    from llmrec.registry.bundle import ModelBundle

PLAN = (("swap", 0.2), ("encoder", 0.6), ("ranker", 0.7), ("ingress", 0.8))
"""Events at shares of the run: the champion swap, then one kill of each replica."""


def register_two_versions(model: str, tracking: str, tmp: Path) -> tuple[str, ModelBundle]:
    """The model's bundle as versions 1 (champion) and 2 of ``soak-scorer`` in a new store."""
    from llmrec.config import RegistryConfig
    from llmrec.registry import aliases
    from llmrec.registry.bundle import ModelBundle

    source = source_bundle(model, tracking, tmp / "source")
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = RegistryConfig(
        tracking_uri=store, artifact_location=str(tmp / "art"), model_name="soak-scorer"
    )
    for run in ("soak-v1", "soak-v2"):
        register_copy(cfg, run, source)
    aliases.set_champion("soak-scorer", "1")
    return store, ModelBundle(source)


class Traffic:
    """The mixed requests, each with the statuses it must get."""

    def __init__(self, bundle: ModelBundle, token: str, seed: int = 0) -> None:
        self.users = sorted(bundle.histories)
        self.items = list(bundle.catalogue.ids)
        self.auth = {"Authorization": f"Bearer {token}"}
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.sent_events = 0

    def next(self) -> tuple[str, str, str, dict[str, Any], dict[str, str], set[int]]:
        """(kind, method, path, json body, headers, accepted statuses)."""
        with self.lock:
            r = float(self.rng.random())
            user = self.users[int(self.rng.integers(len(self.users)))]
            items = [self.items[int(i)] for i in self.rng.integers(0, len(self.items), 4)]
            if r < 0.35:
                return "known user", "POST", "/recommend", {"user_id": user, "k": 10}, {}, {200}
            if r < 0.55:
                body: dict[str, Any] = {"history": items[:3], "query": "something new", "k": 10}
                return "history+query", "POST", "/recommend", body, {}, {200}
            if r < 0.65:
                return "query", "POST", "/recommend", {"query": "a long story", "k": 5}, {}, {200}
            if r < 0.80:
                self.sent_events += 1
                event: dict[str, Any] = {
                    "user_id": f"soak-{user}",
                    "item_id": items[0],
                    "event": "click",
                }
                event["timestamp"] = 1_700_000_000 + self.sent_events  # identifies it
                return "feedback", "POST", "/feedback", event, self.auth, {200}
            if r < 0.85:
                return "history", "GET", f"/users/{user}/history", {}, self.auth, {200}
            if r < 0.90:
                return "readyz", "GET", "/readyz", {}, {}, {200}
            bad: list[tuple[str, str, dict[str, Any], dict[str, str], set[int]]] = [
                ("POST", "/recommend", {"user_id": "nobody-用户"}, {}, {404}),
                ("POST", "/recommend", {"query": "x", "k": 0}, {}, {422}),
                ("POST", "/recommend", {}, {}, {422}),
                ("POST", "/feedback", {"user_id": user, "item_id": items[0]}, {}, {401}),
            ]
            method, path, body, headers, ok = bad[int(self.rng.integers(len(bad)))]
            return "bad request", method, path, body, headers, ok


def client(url: str, traffic: Traffic, stop: threading.Event, out: list[Result]) -> None:
    """One client thread: send, time, record (status 599: no HTTP answer)."""
    import requests

    session = requests.Session()
    while not stop.is_set():
        kind, method, path, body, headers, ok = traffic.next()
        start = time.time()
        try:
            r = session.request(method, url + path, json=body or None, headers=headers, timeout=60)
            status, answer = r.status_code, r.json() if r.content else {}
        except (requests.RequestException, ValueError):
            status, answer = 599, {}
        out.append(
            {
                "t": start,
                "ms": 1000 * (time.time() - start),
                "kind": kind,
                "status": status,
                "failed": status not in ok,
                "body": body,
                "version": answer.get("model_version") if isinstance(answer, dict) else None,
            }
        )


def run_plan(
    minutes: float,
    server: subprocess.Popen[bytes],
    start: float,
    events: dict[str, float],
    memory: list[dict[str, Any]],
) -> None:
    """Swap and kills at their times; memory of every Serve process every 5 s."""
    from llmrec.registry import aliases

    total = 60 * minutes
    pending = list(PLAN)
    while time.time() - start < total:
        now = time.time() - start
        while pending and now >= pending[0][1] * total:
            what, _ = pending.pop(0)
            if what == "swap":
                aliases.set_champion("soak-scorer", "2")
            else:
                proc = serve_processes(server.pid).get(what)
                if proc is not None:
                    proc.send_signal(signal.SIGKILL)
            events[what] = time.time()
            print(f"[{now:6.1f} s] {what if what == 'swap' else 'kill ' + what}", flush=True)
        sample: dict[str, Any] = {"t": time.time()}  # and per role: (pid, RSS MiB)
        for role, proc in serve_processes(server.pid).items():
            try:
                sample[role] = (proc.pid, proc.memory_info().rss / 2**20)
            except Exception:
                continue
        memory.append(sample)
        time.sleep(5)


def main() -> int:
    """Register, serve, run the traffic and the plan, report (0: every target met)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="models:/llmrec-scorer@champion")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--window", type=float, default=5.0, help="s added to kill windows")
    args = parser.parse_args()
    quiet()
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-soak-"))
    token, port = secrets.token_hex(16), free_port()
    url = f"http://127.0.0.1:{port}"
    store, bundle = register_two_versions(args.model, args.tracking_uri, tmp)
    server = serve_run(
        tmp,
        port,
        {
            "model_uri": "models:/soak-scorer@champion",
            "tracking_uri": store,
            "watch_interval_s": 2,
            "history_db": str(tmp / "history.sqlite"),
            "feedback_dir": str(tmp / "feedback"),
        },
        {"LLMREC_API_TOKEN": token},
    )
    try:
        wait_ready(url, server, timeout=600)
        print(f"serving on {url} (log: {tmp / 'serve.log'})", flush=True)
        traffic = Traffic(bundle, token)
        results: list[Result] = []
        memory: list[dict[str, Any]] = []
        events: dict[str, float] = {}
        stop = threading.Event()
        threads = [
            threading.Thread(target=client, args=(url, traffic, stop, results))
            for _ in range(args.concurrency)
        ]
        start = time.time()
        for t in threads:
            t.start()
        run_plan(args.minutes, server, start, events, memory)
        stop.set()
        for t in threads:
            t.join()
        return report(results, memory, events, start, args, tmp / "feedback")
    finally:
        stop_server(server)


if __name__ == "__main__":
    sys.exit(main())
