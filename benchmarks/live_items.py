"""Live catalogue changes: how long until items posted to /admin/items are recommendable,
and what the insert costs the requests being served meanwhile.

    python benchmarks/live_items.py                          # 100 items, 4 clients
    python benchmarks/live_items.py --items 100 --rounds 3 --model models:/llmrec-scorer/1

Serves ``--model`` (default ``models:/llmrec-scorer@champion`` in ``$MLFLOW_TRACKING_URI``,
else ./mlflow.db) with the Serve graph on a local Ray, with history, feedback and live
catalogue files in a temporary folder (the real serving state is not touched). While
``--clients`` threads send /recommend requests (a 3-item history and a typed query), each
round posts ``--items`` new items in a category of their own and then asks for that
category until every new item is in the answer: the figure is the time from sending the
POST to that answer. The /recommend p50 is printed for the seconds before the insert
(baseline) and for the requests that overlapped the insert.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import quiet
from _table import machine, print_table

WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbour"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_items(n: int, round_: int) -> list[dict[str, Any]]:
    """``n`` items in a category no other item has (one request can ask for all of them)."""
    return [
        {
            "item_id": f"live-{round_}-{k:04d}",
            "title": f"The {WORDS[k % 8].title()} Almanac, volume {k}",
            "text": f"A new guide about {WORDS[k % 8]} landscapes and {WORDS[(k + 3) % 8]}.",
            "categories": [f"Live batch {round_}"],
        }
        for k in range(n)
    ]


class Load:
    """Client threads sending /recommend; every request's (start, seconds, status)."""

    def __init__(self, url: str, bodies: list[dict[str, Any]], clients: int) -> None:
        import requests

        self.stop = threading.Event()
        self.log: list[tuple[float, float, int]] = []

        def client(seed: int) -> None:
            session = requests.Session()
            k = seed
            while not self.stop.is_set():
                t0 = time.perf_counter()
                r = session.post(f"{url}/recommend", json=bodies[k % len(bodies)], timeout=60)
                self.log.append((t0, time.perf_counter() - t0, r.status_code))
                k += clients

        self.threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in self.threads:
            t.start()

    def p50_ms(self, start: float, end: float) -> tuple[float, int]:
        """p50 of the requests that overlap ``[start, end]``, and how many there were."""
        took = [s for t0, s, _ in self.log if t0 <= end and t0 + s >= start]
        return (float(np.percentile(took, 50)) * 1000 if took else float("nan")), len(took)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def insert_round(url: str, token: str, n: int, round_: int) -> tuple[float, float, float]:
    """(seconds of the POST, seconds until every item is recommendable, end time)."""
    import requests

    items = new_items(n, round_)
    headers = {"Authorization": f"Bearer {token}"}
    t0 = time.perf_counter()
    r = requests.post(f"{url}/admin/items", json={"items": items}, headers=headers, timeout=120)
    posted = time.perf_counter() - t0
    if r.status_code != 200 or len(r.json()["added"]) != n:
        raise RuntimeError(f"POST /admin/items answered {r.status_code}: {r.text[:300]}")
    wanted = {i["item_id"] for i in items}
    ask = {"query": "a new guide", "categories": items[0]["categories"], "k": min(n, 100)}
    while True:
        answer = requests.post(f"{url}/recommend", json=ask, timeout=60).json()
        if wanted <= {i["item_id"] for i in answer.get("items", [])}:
            return posted, time.perf_counter() - t0, time.perf_counter()
        if time.perf_counter() - t0 > 60:
            raise RuntimeError("the new items were not recommendable within 60 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models:/llmrec-scorer@champion")
    parser.add_argument("--items", type=int, default=100, help="items per POST (at most 100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--baseline-s", type=float, default=5.0)
    args = parser.parse_args()
    quiet()
    import mlflow
    import ray
    from llmrec.registry import store as registry
    from llmrec.registry.bundle import ModelBundle
    from ray import serve

    from serve_deployments import build_app

    tracking = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{Path('mlflow.db').resolve()}")
    mlflow.set_tracking_uri(tracking)
    version, path = registry.download_bundle(args.model)
    ids = list(ModelBundle(path).catalogue.ids)
    rng = np.random.default_rng(0)
    bodies = [
        {"history": [ids[j] for j in rng.choice(len(ids), 3, replace=False)], "query": w, "k": 10}
        for w in WORDS * 4
    ]
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-live-bench-"))
    token = "bench-token"
    os.environ["LLMREC_API_TOKEN"] = token
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"port": port})
    settings = {
        "model_uri": version.uri,
        "tracking_uri": tracking,
        "history_db": str(tmp / "history.sqlite"),
        "feedback_dir": str(tmp / "feedback"),
        "watch_interval_s": 0,
        "max_body_bytes": 1 << 20,
    }
    serve.run(build_app(settings), name="live-bench", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    load = Load(url, bodies, args.clients)
    rows = []
    try:
        for round_ in range(args.rounds):
            quiet_from = time.perf_counter()
            time.sleep(args.baseline_s)
            base, base_n = load.p50_ms(quiet_from, time.perf_counter())
            start = time.perf_counter()
            posted, ready, end = insert_round(url, token, args.items, round_)
            during, during_n = load.p50_ms(start, end)
            rows.append(
                [
                    str(round_ + 1),
                    f"{posted:.2f}",
                    f"{ready:.2f}",
                    f"{base:.0f} ({base_n})",
                    f"{during:.0f} ({during_n})",
                ]
            )
    finally:
        load.close()
        serve.shutdown()
        ray.shutdown()
    errors = sum(1 for _, _, status in load.log if status != 200)
    print_table(
        f"{args.items} items per POST into {version.uri} ({len(ids)} items), "
        f"{args.clients} clients sending /recommend; {machine()}",
        [
            "round",
            "POST /admin/items (s)",
            f"all {args.items} recommendable (s)",
            "/recommend p50 before, ms (requests)",
            "/recommend p50 during the insert, ms (requests)",
        ],
        rows,
    )
    print(f"{len(load.log)} /recommend requests, {errors} not 200")
    return 0


if __name__ == "__main__":
    sys.exit(main())
