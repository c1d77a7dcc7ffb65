"""Where the Serve graph's milliseconds go, and what Ray Serve's settings change.

    python benchmarks/graph_overhead.py                        # 10k items, the settings below
    python benchmarks/graph_overhead.py --sizes 10000,100000 --settings default,throughput

One version per catalogue size (the ``serve_latency.py`` catalogue and requests: a 5-item
history plus a typed query) is registered once in a temporary MLflow store. Each Serve
setting (``--settings``: names from :data:`SETTINGS`, environment variables Ray reads when
it starts) then runs in its own Ray, started by a child process with that environment:

- p50/p99 and requests per second over HTTP at each ``--concurrency``;
- CPU ms per request of each process at every concurrency;
- with ``--trace`` (default on), a second pass at the highest concurrency (or
  ``--trace-concurrency``) under ``py-spy``
  (every Serve process sampled): each process's CPU split by what its sampled stacks were
  running (the package of the innermost frame that has one: llmrec code, pydantic,
  FastAPI/Starlette, the HTTP server, Serve's request path, Ray core, asyncio, logging,
  the model).

The floor (builder + encoder + ranker in this process, unbatched and in batches of
``--batch``) is measured once per size in the parent, as ``serve_latency.py`` does.

With ``--plumbing``, each setting's Ray first serves the graph's shape with no model in it
(``_plumbing.py``: the same request body, grouping and three hops; zero vectors, ten fixed
items), measured the same way: "Serve alone". A graph with a model cannot serve more requests
a second than that, so its req/s over the batched floor bounds the graph's ratio at
concurrency 32 ("at most"); at concurrency 1 the floor plus its p50 is about the best the
graph can answer in ("floor + hops").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _plumbing
from _common import quiet
from _process_cpu import cpu_by_role, idle_cpu, role_pids, traced
from _table import machine, print_table
from llmrec.serving.http.proxy import GRPC_ENV

GRPC_LIMIT = {k: v for k, v in GRPC_ENV.items() if "LENGTH" in k}
"""gRPC keeps its 4 MiB limit on a received message unless lifted (``GRPC_ENV``)."""
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    # Ray Serve's bundle (Ray >= 2.55): gRPC between replicas, user code and router on the
    # replica's main loop, request-path logs buffered, GC frozen after start, direct ingress
    # (the ingress replica serves HTTP itself: no proxy hop)
    "throughput": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", **GRPC_LIMIT},
    # the same with the HTTP proxy kept (its 503 middleware and port stay as they are)
    "throughput-proxy": {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
        **GRPC_LIMIT,
    },
    "grpc": GRPC_ENV,  # what docs/serving.md recommends exporting
    "main-loop": {
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
        "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    },
    "log-buffer": {"RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000"},
}
ROLES = {
    "ServeReplica:bench:Ingress": "ingress",
    "ServeReplica:bench:QueryEncoderDeployment": "encoder",
    "ServeReplica:bench:CandidateRankerDeployment": "ranker",
    "ProxyActor": "proxy",
    "ServeController": "controller",
    "graph_overhead.py --child": "load client",
}


def child(args: argparse.Namespace) -> int:
    """One setting: this process's environment starts Ray; prints the rows as JSON."""
    import ray
    from _latency_data import bodies
    from _latency_http import load_http
    from _serving import free_port, gone, url_of
    from ray import serve

    from serve_deployments import build_app

    settings = json.loads(args.child)
    port = free_port()
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    reqs = bodies(args.n, args.requests)
    levels = [int(c) for c in args.concurrency.split(",")]
    plumbing = None
    if args.plumbing:  # the same hops with no model, before the graph, in the same Ray
        serve.run(_plumbing.app(), name="plumbing", route_prefix="/")
        url = url_of(port) + "/recommend"
        load_http(url, reqs[:10], 1)  # warm-up, then the same settling time as the graph
        alone = role_pids({**ROLES, **_plumbing.ROLES})
        quiet_cpu = idle_cpu(alone, args.idle_seconds)
        plumbing = {"rows": levels_at(url, reqs, levels, alone, quiet_cpu), "idle": quiet_cpu}
        serve.delete("plumbing")
        gone(url)
    serve.run(build_app(settings), name="bench", route_prefix="/")
    url = url_of(port) + "/recommend"
    load_http(url, reqs[:10], 1)  # warm-up
    pids = role_pids(ROLES)
    idle = idle_cpu(pids, args.idle_seconds)
    rows = levels_at(url, reqs, levels, pids, idle)
    trace: dict[str, Counter[str]] = {}
    at = args.trace_concurrency or max(levels)
    if args.trace:
        tmp = Path(tempfile.mkdtemp(prefix="llmrec-trace-"))
        trace = traced(pids, lambda: load_http(url, reqs, at), tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    serve.shutdown()
    ray.shutdown()
    traced_at = at if args.trace else None
    result = {
        "rows": rows,
        "plumbing": plumbing,
        "trace": trace,
        "url": url,
        "traced_at": traced_at,
        "idle": idle,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def levels_at(
    url: str,
    reqs: list[dict[str, Any]],
    levels: list[int],
    pids: dict[str, list[int]],
    idle: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Latency, req/s, errors and each process's CPU ms per request at each concurrency
    (and, with ``idle``, what the same seconds cost each process with no request)."""
    from _latency_http import load_http

    rows = []
    for c in levels:
        before = cpu_by_role(pids)
        start = time.perf_counter()
        res = load_http(url, reqs, c)
        took = time.perf_counter() - start
        spent = cpu_by_role(pids)
        cpu = {r: 1000 * (spent[r] - before.get(r, 0.0)) / len(reqs) for r in spent}
        row = {"c": c, "lat": res["lat"], "rps": res["rps"], "errors": res["errors"], "cpu": cpu}
        if idle is not None:
            row["idle"] = {r: idle.get(r, 0.0) * took / len(reqs) for r in spent}
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="models:/llmrec-scorer@champion")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--sizes", default="10000")
    parser.add_argument("--settings", default="default,throughput-proxy,throughput")
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--requests", type=int, default=320, help="per concurrency level")
    parser.add_argument("--batch", type=int, default=16, help="encoder max batch size")
    parser.add_argument(
        "--threads", type=int, default=2, help="intra-op threads of the in-process floor"
    )
    parser.add_argument(
        "--encoder-threads",
        type=int,
        default=0,
        help="the encoder replica's threads (0: the shipped default, ServeSettings)",
    )
    parser.add_argument(
        "--groups-in-flight",
        default="0",
        help="the ingress's max_groups_in_flight, each value a graph of its own (0: shipped)",
    )
    parser.add_argument("--encoded", type=int, default=2000)
    parser.add_argument("--trace", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--trace-concurrency", type=int, default=0, help="trace at this level (0: the highest)"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=10.0,
        help="measure each process's CPU with no traffic this long first (0: skip)",
    )
    parser.add_argument(
        "--plumbing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also serve the graph's shape with no model first (_plumbing.py): Serve's own cost",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    quiet()
    if args.child:
        return child(args)
    unknown = [s for s in args.settings.split(",") if s not in SETTINGS]
    if unknown:
        parser.error(f"--settings: unknown {unknown}; known: {', '.join(SETTINGS)}")
    return measure(args)


def measure(args: argparse.Namespace) -> int:
    import dataclasses

    import torch
    from _latency_costs import floor_rows
    from _latency_data import bodies, make_bundle
    from _serving import register_copy, source_bundle
    from llmrec.config import RegistryConfig
    from llmrec.registry.bundle import ModelBundle
    from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, ServeSettings

    torch.set_num_threads(args.threads)
    source = source_bundle(args.model, args.tracking_uri)
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-overhead-"))
    registry = RegistryConfig(
        tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}", artifact_location=str(tmp / "art")
    )
    towers = ModelBundle(source).load_towers()
    latency: list[tuple[object, ...]] = []
    cpu: list[tuple[object, ...]] = []
    for n in [int(s) for s in args.sizes.split(",")]:
        bdir = make_bundle(source, n, min(args.encoded, n), tmp / f"b{n}", towers, 1)
        version = register_copy(dataclasses.replace(registry, model_name=f"g{n}"), "g", bdir)
        settings = {
            "tracking_uri": registry.tracking_uri,
            "history_db": str(tmp / "h.sqlite"),
            "feedback_dir": str(tmp / "fb"),
            "watch_interval_s": 0,
            "max_batch_size": args.batch,
            "encoder_threads": args.encoder_threads or ServeSettings().encoder_threads,
            "precompute_users": False,
            "impressions": False,
            "model_uri": version.uri,
        }
        bundle = ModelBundle(bdir)
        s = ServeSettings.from_args(settings)
        encoder = QueryEncoder(bundle, args.threads)
        builder = QueryBuilder(bundle, settings=s, parser=encoder.parser(s.intent_title_vectors))
        parts = (builder, encoder, CandidateRanker(bundle, s))
        _, floor, batched = floor_rows(str(n), parts, bodies(n, 160), args.batch)
        latency.append((f"{n:,}", "floor (in process)", 1, round(floor[0], 1), "-", "-", "-", "-"))
        row = (f"{n:,}", "floor, batched", args.batch, "-", "-", round(batched, 1), "-", "-")
        latency.append(row)
        del parts, encoder, builder
        groups = [int(g) for g in args.groups_in_flight.split(",")]
        for name, g in [(s, g) for s in args.settings.split(",") for g in groups]:
            label = f"{name}, {g} in flight" if g else name
            shipped = {**settings, "max_groups_in_flight": g} if g else settings
            print(f"[{n:,} items, setting {label}]", flush=True)
            got = run_child(args, n, shipped, SETTINGS[name])
            if not isinstance(got, str):
                print(f"  served at {got['url']}", flush=True)
            if isinstance(got, str):  # the graph did not start or serve: why, in the table
                latency.append((f"{n:,}", label, "-", "-", "-", "-", "-", got))
                continue
            if got.get("plumbing"):  # Serve alone: what it leaves the graph
                alone = {**got["plumbing"], "trace": {}, "traced_at": None}
                add_rows(latency, cpu, f"{n:,}", f"{label}: Serve alone", alone, floor[0], batched)
            add_rows(latency, cpu, f"{n:,}", label, got, floor[0], batched)
    print_table(
        f"The graph over HTTP against the floor ({machine()})",
        ["items", "setting", "concurrency", "p50 ms", "p99 ms", "req/s", "errors", "vs floor"],
        latency,
    )
    print_table(
        "CPU ms per request, and (at the traced concurrency) what the sampled stacks ran",
        [
            "items",
            "setting",
            "concurrency",
            "process",
            "CPU ms/request",
            "idle CPU ms/s",
            "ms/request above idle",
            "by innermost known frame (ms/request)",
        ],
        cpu,
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def add_rows(
    latency: list[tuple[object, ...]],
    cpu: list[tuple[object, ...]],
    size: str,
    label: str,
    got: dict[str, Any],
    floor: float,
    batched: float,
) -> None:
    """One served app's rows in both tables. The graph's ratio is to the floor (concurrency
    1) or the batched floor; Serve alone's (``label`` ends so) is what it leaves the graph:
    at concurrency 1 the model's time after the hops' ("floor + hops"), above it the most a
    graph with a model in it can serve ("at most")."""
    alone = label.endswith("Serve alone")
    for row in got["rows"]:
        p50, _, p99 = row["lat"]
        if row["c"] == 1:
            ratio = f"floor + hops {(floor + p50) / floor:.2f}x" if alone else f"{p50 / floor:.2f}x"
        else:
            ratio = f"{'at most ' if alone else ''}{row['rps'] / batched:.2f}x"
        values = (round(p50, 1), round(p99, 1), round(row["rps"], 1), row["errors"], ratio)
        latency.append((size, label, row["c"], *values))
        print("  " + " | ".join(str(v) for v in latency[-1]), flush=True)
    for row in got["rows"]:
        traced_here = row["c"] == got["traced_at"]
        for role, ms in sorted(row["cpu"].items(), key=lambda r: -r[1]):
            split = got["trace"].get(role, {}) if traced_here else {}
            total = sum(split.values()) or 1
            parts = ", ".join(f"{k} {ms * v / total:.1f}" for k, v in Counter(split).most_common(5))
            idle_ms = row.get("idle", {}).get(role, 0.0)
            idle_per_s = round(got.get("idle", {}).get(role, 0.0), 1)
            spent = (round(ms, 1), idle_per_s, round(ms - idle_ms, 1), parts or "-")
            cpu.append((size, label, row["c"], role, *spent))


def run_child(
    args: argparse.Namespace, n: int, settings: dict[str, Any], env: dict[str, str]
) -> Any:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        json.dumps(settings),
        "--n",
        str(n),
        "--requests",
        str(args.requests),
        "--concurrency",
        args.concurrency,
        "--trace" if args.trace else "--no-trace",
        "--trace-concurrency",
        str(args.trace_concurrency),
        "--idle-seconds",
        str(args.idle_seconds),
        "--plumbing" if args.plumbing else "--no-plumbing",
    ]
    done = subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=900
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    print(f"setting {env} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}", flush=True)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    return f"failed: {lines[-1][:200] if lines else done.returncode}"


if __name__ == "__main__":
    sys.exit(main())
