"""What ``serve_latency.py`` measures over HTTP: latency and throughput of a running app at
a concurrency, the ingress's query-vector cache on and off for known users, the impression
log on and off, and the CPU time per request of each Serve process (psutil).

Each comparison runs both sides in the same run, alternated where drift could favour one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypedDict

from _serving import percentiles

AppBuilder = Callable[[dict[str, Any]], Any]
"""``serve_deployments.build_app``: ServeSettings fields -> a Serve application."""


class Load(TypedDict):
    """What :func:`load_http` measured."""

    lat: tuple[float, float, float]
    """p50, p95 and p99 latency, ms."""
    rps: float
    """Requests answered (or failed) per second, all threads together."""
    errors: int
    """Requests without a 200 answer."""


def load_http(
    url: str,
    reqs: list[dict[str, Any]],
    concurrency: int,
    answers: dict[int, list[str]] | None = None,
) -> Load:
    """Send ``reqs`` with ``concurrency`` client threads; latency per request, errors (and
    each request's item ids in ``answers``, by position, when given)."""
    import requests

    times: list[float] = []
    errors = 0
    lock = threading.Lock()
    queue = list(reversed(list(enumerate(reqs))))

    def worker() -> None:
        nonlocal errors
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                index, body = queue.pop()
            start = time.perf_counter()
            try:
                r = session.post(url, json=body, timeout=60)
                ok = r.status_code == 200
                if ok and answers is not None:
                    answers[index] = [i["item_id"] for i in r.json()["items"]]
            except requests.RequestException:
                ok = False
            took = 1000 * (time.perf_counter() - start)
            with lock:
                times.append(took)
                errors += 0 if ok else 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {"lat": percentiles(times), "rps": len(reqs) / elapsed, "errors": errors}


def known_users_ab(
    serve: ModuleType,
    build_app: AppBuilder,
    settings: dict[str, Any],
    uri: str,
    base: str,
    levels: list[int],
    count: int,
) -> tuple[list[tuple[object, ...]], list[str]]:
    """Known-user requests (no query) with the ingress's vector cache on, then off, in the
    same run: latency and throughput at each concurrency, and whether the top-10 lists are
    identical."""
    import requests

    users = [f"bench-u{u:05d}" for u in range(settings["known_users"])]
    reqs = [{"user_id": users[i % len(users)], "k": 10} for i in range(count)]
    rows: list[tuple[object, ...]] = []
    results: dict[str, dict[int, Load]] = {}
    answers: dict[str, dict[int, list[str]]] = {}
    app = {k: v for k, v in settings.items() if k != "known_users"}
    for cache, size in (("on", 100_000), ("off", 0)):
        serve.run(
            build_app(
                {**app, "model_uri": uri, "user_cache_size": size, "precompute_users": bool(size)}
            ),
            name="bench",
            route_prefix="/",
        )
        deadline = time.time() + 600
        while size and time.time() < deadline:  # the precomputation finished
            ready = requests.get(f"{base}/readyz", timeout=30).json()
            if ready["cached_users"] >= len(users):
                break
            time.sleep(1)
        load_http(f"{base}/recommend", reqs[:10], 1)  # warm-up
        answers[cache], results[cache] = {}, {}
        for c in levels:
            res = load_http(f"{base}/recommend", reqs, c, answers[cache] if c == 1 else None)
            results[cache][c] = res
            rows.append((f"cache {cache}", c, *res["lat"], res["rps"], res["errors"]))
        serve.delete("bench")
    lo, hi = min(levels), max(levels)
    on, off = results["on"], results["off"]
    same = answers["on"] == answers["off"] and len(answers["on"]) == count
    checks = [
        f"known users, concurrency {hi}: {on[hi]['rps'] / off[hi]['rps']:.2f}x req/s with the "
        f"cache (target >= 3x): {'met' if on[hi]['rps'] >= 3 * off[hi]['rps'] else 'NOT met'}",
        f"known users, concurrency {lo}: p50 {on[lo]['lat'][0]:.1f} ms with the cache vs "
        f"{off[lo]['lat'][0]:.1f} ms without: "
        + ("lower" if on[lo]["lat"][0] < off[lo]["lat"][0] else "NOT lower"),
        "known users: top-10 lists with and without the cache "
        + ("identical" if same else "DIFFER"),
    ]
    return rows, checks


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of every process on the machine, by pid."""
    import psutil

    out: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            t = proc.cpu_times()
            out[proc.info["pid"]] = (" ".join(proc.info["cmdline"] or []), t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


ROLES = (
    ("QueryEncoderDeployment", "encoder replica"),
    ("Ingress", "ingress replica"),
    ("CandidateRankerDeployment", "ranker replica"),
    ("ProxyActor", "Serve HTTP proxy"),
    ("ServeController", "Serve controller"),
    ("serve_latency.py", "this script (HTTP load client)"),
)


def cpu_per_request(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], requests: int
) -> list[tuple[str, float]]:
    """ms of CPU per request by role (Serve's processes, the client, the rest of Ray)."""
    spent: dict[str, float] = {}
    for pid, (cmd, t) in after.items():
        used = t - before.get(pid, (cmd, 0.0))[1]
        role = next((r for key, r in ROLES if key in cmd), "other processes (Ray, system)")
        spent[role] = spent.get(role, 0.0) + used
    rows = [(role, 1000 * t / requests) for role, t in spent.items() if t > 0]
    return sorted(rows, key=lambda r: -r[1])


def impression_cost(
    serve: ModuleType,
    build_app: AppBuilder,
    settings: dict[str, Any],
    uri: str,
    base: str,
    reqs: list[dict[str, Any]],
    rounds: int = 2,
) -> tuple[list[tuple[object, ...]], str]:
    """p50/p95 at concurrency 1 with the impression log on and off in the same run: one app
    of each, requests alternated between them (which goes first alternates too)."""
    import requests

    for name, logged in (("log-on", True), ("log-off", False)):
        app = build_app({**settings, "model_uri": uri, "impressions": logged})
        serve.run(app, name=name, route_prefix=f"/{name}")
    sessions = {name: requests.Session() for name in ("log-on", "log-off")}
    times: dict[str, list[float]] = {"log-on": [], "log-off": []}
    for i, body in enumerate(reqs[:10] * 2 + reqs * rounds):
        pair = ("log-on", "log-off") if i % 2 else ("log-off", "log-on")
        for name in pair:
            start = time.perf_counter()
            r = sessions[name].post(f"{base}/{name}/recommend", json=body, timeout=60)
            took = 1000 * (time.perf_counter() - start)
            if r.status_code == 200 and i >= 20:  # after the warm-up
                times[name].append(took)
    for name in times:
        serve.delete(name)
    on, off = percentiles(times["log-on"]), percentiles(times["log-off"])
    rows: list[tuple[object, ...]] = [
        ("on", len(times["log-on"]), on[0], on[1]),
        ("off", len(times["log-off"]), off[0], off[1]),
    ]
    cost = (on[0] - off[0]) / off[0]
    check = (
        f"impression log: p50 at concurrency 1 {on[0]:.1f} ms on vs {off[0]:.1f} ms off, "
        f"{cost:+.1%} (target <= +5%): {'met' if cost <= 0.05 else 'NOT met'}"
    )
    return rows, check
